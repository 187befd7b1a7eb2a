//! The upstream leg: streaming (SSE event by event), 502 for a dead upstream, 504 for a
//! slow one, and the limits that keep a slow or huge client from holding the proxy.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(upstream: &str, extra: &str) -> String {
    format!(
        r#"
[limits]
header_read_timeout = "1s"
{extra}

{HS_ISSUER}

[[route]]
path = "/"
upstream = "{upstream}"
connect_timeout = "1s"
timeout = "500ms"
"#
    )
}

async fn proxy(upstream: &str, extra: &str) -> TestProxy {
    TestProxy::start_with_secrets(&config(upstream, extra), &[("HS", SECRET)]).await
}

fn token() -> String {
    mint_hs(&claims(ISS, "api", json!({})))
}

#[tokio::test]
async fn sse_events_reach_the_client_one_by_one() {
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let upstream = Upstream::start(move |_| {
        let sent = sent_tx.clone();
        async move {
            let stream = async_stream(sent);
            let mut r = http::Response::new(StreamBody::new(stream).boxed());
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
    })
    .await;
    let proxy = proxy(&upstream.url(), "").await;
    let request = http::Request::get(proxy.url("/events"))
        .header("authorization", format!("Bearer {}", token()))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = loop {
        let frame = body.frame().await.unwrap().unwrap();
        if let Some(data) = frame.data_ref() {
            break (String::from_utf8_lossy(data).into_owned(), Instant::now());
        }
    };
    assert!(first.0.contains("event 0"), "{}", first.0);
    let mut rest = String::new();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.unwrap().data_ref() {
            rest.push_str(&String::from_utf8_lossy(data));
        }
    }
    assert!(rest.contains("event 2"), "{rest}");
    let mut sent = Vec::new();
    while let Ok(t) = sent_rx.try_recv() {
        sent.push(t);
    }
    assert_eq!(sent.len(), 3);
    assert!(
        first.1 < sent[2],
        "the first event arrived only after the last was sent"
    );
}

/// Three SSE events 200 ms apart, reporting when each was handed to the server.
fn async_stream(
    sent: tokio::sync::mpsc::UnboundedSender<Instant>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    futures_util::stream::unfold(0u32, move |i| {
        let sent = sent.clone();
        async move {
            if i == 3 {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let _ = sent.send(Instant::now());
            Some((
                Ok(Frame::data(Bytes::from(format!("data: event {i}\n\n")))),
                i + 1,
            ))
        }
    })
}

#[tokio::test]
async fn a_dead_upstream_is_502_and_a_slow_one_504() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let proxy_dead = proxy(&format!("http://{dead}"), "").await;
    let answer = bearer(&proxy_dead.url("/x"), &token()).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.json()["error"], "connect");
    assert!(
        proxy_dead
            .metric("gatehouse_upstream_errors_total{kind=\"connect\",route=\"/\"}")
            .await
            >= 1.0
    );

    let slow = Upstream::start(|_| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        http::Response::new(full("late"))
    })
    .await;
    let proxy_slow = proxy(&slow.url(), "").await;
    let started = Instant::now();
    let answer = bearer(&proxy_slow.url("/x"), &token()).await;
    assert_eq!(answer.status, 504);
    assert_eq!(answer.json()["error"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_huge_head_gets_431_and_a_slow_client_is_cut_off() {
    let upstream = Upstream::echo().await;
    let proxy = proxy(
        &upstream.url(),
        "max_header_bytes = 16384\nmax_token_bytes = 8192",
    )
    .await;
    let big = "x".repeat(20_000);
    let answer = get(&proxy.url("/x"), &[("x-filler", &big)]).await;
    assert_eq!(answer.status, 431);

    // A client that sends half a request head and stalls: closed after header_read_timeout.
    let mut socket = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    socket
        .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the proxy kept a stalled client open");
    assert!(upstream.requests().is_empty());
}

// === Request trailers ===

/// What an HTTP/2 upstream received: the version it was spoken to in, the body, the trailers.
type H2Seen =
    std::sync::Arc<std::sync::Mutex<Vec<(http::Version, Bytes, Option<http::HeaderMap>)>>>;

/// An h2c upstream (`upstream_http2 = true` speaks HTTP/2 without TLS) that reads each
/// request to its end, records it and answers `done`.
async fn h2_upstream() -> (String, H2Seen) {
    let seen = H2Seen::default();
    let record = seen.clone();
    let url = serve_h2c(H2Limits::default(), move |req| {
        let record = record.clone();
        async move {
            let version = req.version();
            let collected = req.into_body().collect().await.unwrap();
            let trailers = collected.trailers().cloned();
            record
                .lock()
                .unwrap()
                .push((version, collected.to_bytes(), trailers));
            http::Response::new(full("done"))
        }
    })
    .await;
    (url, seen)
}

/// What an h2c test upstream advertises in its `SETTINGS`.
#[derive(Clone, Copy, Default)]
struct H2Limits {
    max_concurrent_streams: Option<u32>,
    max_header_list_size: Option<u32>,
    /// Close the whole connection, as python-h2 does (`GOAWAY`), when a header block is
    /// larger than `max_header_list_size` (hyper would refuse only the stream, with 431).
    strict_header_list: bool,
}

/// An h2c upstream on 127.0.0.1:0 answering with `answer`; hyper's server respects flow
/// control, like any real upstream.
async fn serve_h2c<F, Fut>(limits: H2Limits, answer: F) -> String
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<TestBody>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let answer = answer.clone();
                    async move { Ok::<_, Infallible>(answer(req).await) }
                });
                let mut builder =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
                builder.max_concurrent_streams(limits.max_concurrent_streams);
                if let Some(size) = limits.max_header_list_size {
                    builder.max_header_list_size(size);
                }
                let limit = match limits.max_header_list_size {
                    Some(size) if limits.strict_header_list => size as usize,
                    _ => usize::MAX,
                };
                let stream = StrictHeaders::new(stream, limit);
                let _ = builder
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

/// A trailer section is a header block no rule of gatehouse reads: spoofed identity,
/// credentials and `Host` would ride in it past the stripping, and over HTTP/2 a
/// connection-specific field in it once left the upstream stream open until the route's
/// timeout, holding one of the streams every caller of the route shares. None goes
/// upstream: the body ends where the trailers were, and the answer comes at once.
#[tokio::test]
async fn client_trailers_never_reach_an_http2_upstream() {
    let (url, seen) = h2_upstream().await;
    let toml = format!(
        "[[route]]\npath = \"/\"\nupstream = \"{url}\"\nauth = \"none\"\n\
         upstream_http2 = true\ntimeout = \"30s\"\n"
    );
    let proxy = TestProxy::start(&toml).await;
    let trailer_sections = [
        "X-Auth-Subject: root\r\nAuthorization: Bearer zzz\r\nCookie: gh_token=leak\r\nHost: evil\r\n",
        "Connection: close\r\n",
        "Transfer-Encoding: chunked\r\n",
    ];
    for trailers in trailer_sections {
        let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let request = format!(
            "POST /up HTTP/1.1\r\nHost: gatehouse\r\nTransfer-Encoding: chunked\r\n\r\n\
             3\r\nabc\r\n0\r\n{trailers}\r\n"
        );
        client.write_all(request.as_bytes()).await.unwrap();
        // Far inside the route's 30 s: an upstream stream left open would only end there.
        let mut answer = Vec::new();
        let read = async {
            let mut buf = [0u8; 1024];
            while !answer.ends_with(b"done") {
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{trailers:?}: {answer}");
    }

    // The same from an HTTP/2 client, whose trailers are a HEADERS frame of their own.
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-auth-subject", http::HeaderValue::from_static("root"));
    trailers.insert("x-forwarded-for", http::HeaderValue::from_static("6.6.6.6"));
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(b"abc"))),
        Ok(Frame::trailers(trailers)),
    ];
    let request = http::Request::post(format!("http://{}/up", proxy.addr))
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    assert_eq!(answer.status(), 200);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4, "{seen:?}");
    for (version, body, trailers) in seen.iter() {
        assert_eq!(*version, http::Version::HTTP_2);
        assert_eq!(body.as_ref(), b"abc");
        assert!(
            trailers.is_none(),
            "trailers reached the upstream: {trailers:?}"
        );
    }
}

/// An upstream socket that fails (the connection, with every stream on it) as soon as the
/// client sends a header block larger than `limit` bytes. The test sends values whose
/// HPACK coding is as long as they are, so block and header list sizes are comparable.
struct StrictHeaders {
    inner: tokio::net::TcpStream,
    limit: usize,
    header: Vec<u8>,
    /// The client preface ("PRI * HTTP/2.0...", 24 bytes), then each frame's payload.
    skip: usize,
    block: usize,
}

impl StrictHeaders {
    fn new(inner: tokio::net::TcpStream, limit: usize) -> Self {
        Self {
            inner,
            limit,
            header: Vec::new(),
            skip: 24,
            block: 0,
        }
    }

    /// Walks the frames in `bytes`; `false` once a header block crossed the limit.
    fn walk(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            if self.header.len() < 9 {
                continue;
            }
            let h = std::mem::take(&mut self.header);
            let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
            // HEADERS starts a block, CONTINUATION adds to it.
            match h[3] {
                0x1 => self.block = len,
                0x9 => self.block += len,
                _ => {}
            }
            if self.block > self.limit {
                return false;
            }
            self.skip = len;
        }
        true
    }
}

impl tokio::io::AsyncRead for StrictHeaders {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        let new = buf.filled()[before..].to_vec();
        if this.limit != usize::MAX && !this.walk(&new) {
            return std::task::Poll::Ready(Err(std::io::ErrorKind::ConnectionAborted.into()));
        }
        polled
    }
}

impl tokio::io::AsyncWrite for StrictHeaders {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn h2_route(url: &str, extra: &str) -> String {
    format!(
        "[[route]]\npath = \"/\"\nupstream = \"{url}\"\nauth = \"none\"\n\
         upstream_http2 = true\ntimeout = \"30s\"\n{extra}"
    )
}

/// A GET that must be answered in full within 10 s (far inside the route's 30 s and the
/// default 60 s `write_timeout`, after which a stalled neighbour would be cut off anyway).
async fn answered_within_10s(url: &str) -> Answer {
    tokio::time::timeout(Duration::from_secs(10), get(url, &[]))
        .await
        .expect("no whole answer within 10 s")
}

/// An HTTP/2 client that opens `streams` requests for `path` and reads none of the
/// answers: its window is 0, so every byte the upstream sends for it stays in gatehouse.
async fn non_reading_client(proxy: &TestProxy, path: &str, streams: usize) -> Vec<h2::RecvStream> {
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut held = Vec::new();
    for _ in 0..streams {
        let mut client = client.clone().ready().await.unwrap();
        let request = http::Request::get(format!("http://{}{path}", proxy.addr))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .expect("no response head within 10 s")
            .unwrap();
        assert_eq!(response.status(), 200);
        held.push(response.into_body());
    }
    held
}

/// Every client of an `upstream_http2` route shares the endpoint's connection. A client
/// that never reads its large answers must not leave their bytes holding the connection's
/// receive window: the upstream could then send nothing to anyone else until
/// `write_timeout`. Each stream's window is its own, and the connection's holds them all.
#[tokio::test]
async fn a_client_that_never_reads_does_not_stall_the_shared_http2_upstream() {
    let url = serve_h2c(H2Limits::default(), |req| async move {
        match req.uri().path() {
            "/big" => http::Response::new(full(vec![b'x'; 4 << 20])),
            _ => http::Response::new(full("small")),
        }
    })
    .await;
    let proxy = TestProxy::start(&h2_route(&url, "")).await;
    assert_eq!(
        answered_within_10s(&proxy.url("/small")).await.body,
        "small"
    );

    // 8 × 4 MiB: more than hyper's default 5 MiB connection window, several times over.
    let _held = non_reading_client(&proxy, "/big", 8).await;
    // Let the upstream push what the windows allow into gatehouse.
    tokio::time::sleep(Duration::from_millis(500)).await;

    for _ in 0..3 {
        let answer = answered_within_10s(&proxy.url("/small")).await;
        assert_eq!(
            (answer.status.as_u16(), answer.body.as_str()),
            (200, "small")
        );
    }
}

/// A client that holds as many slow requests as the upstream allows streams on one
/// connection (its `SETTINGS_MAX_CONCURRENT_STREAMS`) must not queue everybody else behind
/// them: gatehouse never opens more streams on a connection than the upstream allows, and
/// opens another connection to the endpoint instead.
#[tokio::test]
async fn a_client_holding_every_upstream_stream_does_not_queue_the_others() {
    let in_flight = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counting = in_flight.clone();
    let limits = H2Limits {
        max_concurrent_streams: Some(10),
        ..H2Limits::default()
    };
    let url = serve_h2c(limits, move |req| {
        let counting = counting.clone();
        async move {
            if req.uri().path() == "/slow" {
                counting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            http::Response::new(full("fast"))
        }
    })
    .await;
    let proxy = TestProxy::start(&h2_route(&url, "")).await;
    // The route's connection is open before the slow requests arrive, as on a busy route.
    assert_eq!(answered_within_10s(&proxy.url("/fast")).await.status, 200);

    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let url = proxy.url("/slow");
        slow.spawn(async move { get(&url, &[]).await });
    }
    let all_held = eventually(Duration::from_secs(10), || {
        let n = in_flight.load(std::sync::atomic::Ordering::SeqCst);
        async move { n == 10 }
    })
    .await;
    assert!(all_held, "the upstream never saw the 10 slow requests");

    let answer = answered_within_10s(&proxy.url("/fast")).await;
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_str()),
        (200, "fast")
    );
    slow.abort_all();
}

/// At `upstream_http2_max_connections` with every stream taken, a request waits for a
/// stream instead of overrunning the upstream's limit, and gets one as soon as an answer
/// ends, or as soon as a client abandons its answer half-read.
#[tokio::test]
async fn at_the_connection_cap_a_request_waits_for_a_stream_given_back() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let now = std::sync::Arc::new(AtomicUsize::new(0));
    let most = std::sync::Arc::new(AtomicUsize::new(0));
    let (count, peak) = (now.clone(), most.clone());
    let limits = H2Limits {
        max_concurrent_streams: Some(2),
        ..H2Limits::default()
    };
    let url = serve_h2c(limits, move |req| {
        let (count, peak) = (count.clone(), peak.clone());
        async move {
            let n = count.fetch_add(1, SeqCst) + 1;
            peak.fetch_max(n, SeqCst);
            let body = match req.uri().path() {
                "/slow" => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    full("slow")
                }
                "/big" => full(vec![b'x'; 4 << 20]),
                _ => full("fast"),
            };
            count.fetch_sub(1, SeqCst);
            http::Response::new(body)
        }
    })
    .await;
    let proxy = TestProxy::start(&h2_route(&url, "upstream_http2_max_connections = 1\n")).await;

    let mut all = tokio::task::JoinSet::new();
    for path in ["/slow", "/slow", "/fast", "/fast"] {
        let url = proxy.url(path);
        all.spawn(async move { answered_within_10s(&url).await });
    }
    while let Some(answer) = all.join_next().await {
        assert_eq!(answer.unwrap().status, 200);
    }
    assert!(
        most.load(SeqCst) <= 2,
        "the upstream saw {} streams",
        most.load(SeqCst)
    );

    // Two answers that stay half-read hold both streams; abandoning them gives them back.
    let held = non_reading_client(&proxy, "/big", 2).await;
    let waiting = tokio::spawn({
        let url = proxy.url("/fast");
        async move { answered_within_10s(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "a third stream was opened past the cap"
    );
    drop(held);
    assert_eq!(waiting.await.unwrap().body, "fast");
}

/// A header list larger than the upstream's `SETTINGS_MAX_HEADER_LIST_SIZE` is refused
/// with 431 before it is sent: an upstream may answer it with `GOAWAY` (python-h2 does),
/// which would fail every other client's request on the shared connection.
#[tokio::test]
async fn a_header_list_the_http2_upstream_refuses_gets_431_and_is_never_sent() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let limits = H2Limits {
        max_header_list_size: Some(16 * 1024),
        strict_header_list: true,
        ..H2Limits::default()
    };
    let url = serve_h2c(limits, move |req| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push(req.uri().path().to_string());
            if req.uri().path() == "/slow" {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            http::Response::new(full("ok"))
        }
    })
    .await;
    let proxy = TestProxy::start(&h2_route(&url, "")).await;
    let slow_url = proxy.url("/slow");
    let slow = tokio::spawn(async move { get(&slow_url, &[]).await });
    let slow_in_flight = eventually(Duration::from_secs(10), || {
        let seen = seen.lock().unwrap().contains(&"/slow".to_string());
        async move { seen }
    })
    .await;
    assert!(
        slow_in_flight,
        "the slow request never reached the upstream"
    );

    // Under gatehouse's own 64 KiB limit, over the upstream's 16 KiB. `X` takes 8 bits in
    // HPACK's Huffman code: the block on the wire is as large as the list.
    let big = "X".repeat(20 * 1024);
    let answer = get(&proxy.url("/big"), &[("x-big", &big)]).await;
    assert_eq!(answer.status, 431, "{}", answer.body);
    // Just under the upstream's limit, with what gatehouse adds: still sent.
    let fits = "X".repeat(15 * 1024);
    assert_eq!(
        get(&proxy.url("/fits"), &[("x-big", &fits)]).await.status,
        200
    );

    let slow = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the slow request never ended")
        .unwrap();
    assert_eq!((slow.status.as_u16(), slow.body.as_str()), (200, "ok"));
    let seen = seen.lock().unwrap();
    assert!(!seen.iter().any(|p| p == "/big"), "{seen:?}");
}

/// A client that stops its upload half-way (closes, or resets its HTTP/2 stream) broke its
/// own request: the access line says `body_broken`, and no upstream failure is counted or
/// logged, which any client could otherwise raise at will.
#[tokio::test]
async fn a_client_that_abandons_its_upload_is_not_an_upstream_failure() {
    let reads_bodies = Upstream::start(|request| async move {
        let _ = request.into_body().collect().await;
        http::Response::new(full("read"))
    })
    .await;
    let proxy = proxy(&reads_bodies.url(), "").await;
    let mut socket = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {}\r\nContent-Length: 10\r\n\r\nabc",
        token()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            !reads_bodies.requests().is_empty()
        })
        .await,
        "the request never reached the upstream"
    );
    drop(socket);
    let answered = "gatehouse_requests_total{code=\"400\",method=\"POST\",route=\"/\"}";
    assert!(
        eventually(Duration::from_secs(5), || async {
            proxy.metric(answered).await == 1.0
        })
        .await,
        "the broken upload was not answered 400"
    );
    let failed = "gatehouse_upstream_errors_total{kind=\"failed\",route=\"/\"}";
    assert_eq!(proxy.metric(failed).await, 0.0);
}
