//! gatehouse's upstream connection pool against a raw TCP upstream that misbehaves: an
//! answer never reaches another client's request (extra bytes after a response, an early
//! answer while the request body streams, `Connection: close`, a body dropped half-read),
//! a closed idle connection is found before use, and a request the upstream may have
//! received is never sent twice.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A raw upstream: every accepted connection is handed to `script` with its index (from 0).
struct RawUpstream {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawUpstream {
    async fn start<F, Fut>(script: F) -> RawUpstream
    where
        F: Fn(usize, TcpStream, Arc<Mutex<Vec<String>>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (accepted.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let index = count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(script(index, socket, seen.clone()));
            }
        });
        RawUpstream {
            addr,
            accepted,
            heads,
        }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Reads one request head; `None` at EOF. Records its request line in `seen`.
async fn read_head(socket: &mut TcpStream, seen: &Mutex<Vec<String>>) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match socket.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let line = head.lines().next().unwrap_or_default().to_string();
    seen.lock().unwrap().push(line);
    Some(head)
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn proxy(upstream: &RawUpstream) -> TestProxy {
    let toml = format!(
        r#"
[[route]]
path = "/"
upstream = "http://{}"
auth = "none"
connect_timeout = "2s"
timeout = "5s"
"#,
        upstream.addr
    );
    TestProxy::start(&toml).await
}

/// Answers every request on a connection with the request's path as the body, until EOF.
async fn serve_paths(mut socket: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    while let Some(head) = read_head(&mut socket, &seen).await {
        let path = head.split(' ').nth(1).unwrap_or("?").to_string();
        if socket.write_all(ok(&path).as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let upstream = RawUpstream::start(|_, s, seen| serve_paths(s, seen)).await;
    let proxy = proxy(&upstream).await;
    for i in 0..5 {
        let answer = get(&proxy.url(&format!("/r{i}")), &[]).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, format!("/r{i}"));
    }
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn extra_bytes_after_a_response_never_answer_the_next_request() {
    let (written_tx, written_rx) = tokio::sync::oneshot::channel::<()>();
    let written = Arc::new(Mutex::new(Some(written_tx)));
    let upstream = RawUpstream::start(move |index, mut socket, seen| {
        let written = written.clone();
        async move {
            if index > 0 {
                return serve_paths(socket, seen).await;
            }
            read_head(&mut socket, &seen).await;
            socket.write_all(ok("first").as_bytes()).await.unwrap();
            // A second, unasked-for response, as a desynchronised upstream would send.
            tokio::time::sleep(Duration::from_millis(50)).await;
            socket.write_all(ok("smuggled").as_bytes()).await.unwrap();
            if let Some(tx) = written.lock().unwrap().take() {
                let _ = tx.send(());
            }
            let mut rest = Vec::new();
            let _ = socket.read_to_end(&mut rest).await;
        }
    })
    .await;
    let proxy = proxy(&upstream).await;
    assert_eq!(get(&proxy.url("/one"), &[]).await.body, "first");
    written_rx.await.unwrap();
    let answer = get(&proxy.url("/two"), &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "/two");
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn extra_bytes_in_the_same_write_never_answer_the_next_request() {
    let upstream = RawUpstream::start(|index, mut socket, seen| async move {
        if index > 0 {
            return serve_paths(socket, seen).await;
        }
        read_head(&mut socket, &seen).await;
        let both = format!("{}{}", ok("first"), ok("smuggled"));
        socket.write_all(both.as_bytes()).await.unwrap();
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest).await;
    })
    .await;
    let proxy = proxy(&upstream).await;
    assert_eq!(get(&proxy.url("/one"), &[]).await.body, "first");
    let answer = get(&proxy.url("/two"), &[]).await;
    assert_eq!(answer.body, "/two");
}

#[tokio::test]
async fn connection_close_from_the_upstream_is_honoured() {
    let upstream = RawUpstream::start(|_, mut socket, seen| async move {
        while read_head(&mut socket, &seen).await.is_some() {
            // Says close, but keeps the socket open: only the header tells.
            let answer = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
            socket.write_all(answer.as_bytes()).await.unwrap();
        }
    })
    .await;
    let proxy = proxy(&upstream).await;
    for _ in 0..3 {
        assert_eq!(get(&proxy.url("/x"), &[]).await.body, "ok");
    }
    assert_eq!(upstream.connections(), 3);
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test]
async fn a_body_dropped_half_read_never_leaves_its_connection_in_the_pool() {
    let upstream = RawUpstream::start(|index, mut socket, seen| async move {
        if index > 0 {
            return serve_paths(socket, seen).await;
        }
        read_head(&mut socket, &seen).await;
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\npart";
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest).await;
    })
    .await;
    let proxy = proxy(&upstream).await;
    let response = client()
        .request(
            http::Request::get(proxy.url("/big"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let answer = get(&proxy.url("/next"), &[]).await;
    assert_eq!(answer.body, "/next");
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn an_early_answer_while_the_body_streams_keeps_the_connection_out_of_the_pool() {
    let upstream = RawUpstream::start(|index, mut socket, seen| async move {
        if index > 0 {
            return serve_paths(socket, seen).await;
        }
        read_head(&mut socket, &seen).await;
        socket.write_all(ok("early").as_bytes()).await.unwrap();
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest).await;
    })
    .await;
    let proxy = proxy(&upstream).await;
    // An upload that sends one chunk and then keeps its body open.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    tx.send(Ok(Frame::data(Bytes::from_static(b"chunk"))))
        .await
        .unwrap();
    let body = StreamBody::new(tokio_stream_from(rx));
    let request = http::Request::post(proxy.url("/upload"))
        .body(body.boxed())
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client.request(request).await.unwrap();
    let early = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&early[..], b"early");
    let answer = get(&proxy.url("/after"), &[]).await;
    assert_eq!(answer.body, "/after");
    assert_eq!(upstream.connections(), 2);
    drop(tx);
}

/// An upstream that answers early and still reads gets the whole upload; its connection
/// is closed afterwards all the same (see the next test for why).
#[tokio::test]
async fn an_upload_goes_on_after_an_early_answer_but_its_connection_is_not_reused() {
    let (body_tx, body_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let body_tx = Arc::new(Mutex::new(Some(body_tx)));
    let upstream = RawUpstream::start(move |index, mut socket, seen| {
        let body_tx = body_tx.clone();
        async move {
            if index == 0 {
                read_head(&mut socket, &seen).await;
                socket.write_all(ok("early").as_bytes()).await.unwrap();
                let mut body = vec![0u8; 10];
                socket.read_exact(&mut body).await.unwrap();
                if let Some(tx) = body_tx.lock().unwrap().take() {
                    let _ = tx.send(body);
                }
            }
            serve_paths(socket, seen).await;
        }
    })
    .await;
    let proxy = proxy(&upstream).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let head = "POST /upload HTTP/1.1\r\nhost: localhost\r\ncontent-length: 10\r\n\r\n";
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(b"first").await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tcp.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("early"), "{answer}");
    // The rest of the upload, after the answer: the upstream still gets all of it.
    tcp.write_all(b"-last").await.unwrap();
    let body = tokio::time::timeout(Duration::from_secs(5), body_rx)
        .await
        .expect("the upload was cut after the early answer")
        .unwrap();
    assert_eq!(&body[..], b"first-last");
    let answer = get(&proxy.url("/after"), &[]).await;
    assert_eq!(answer.body, "/after");
    assert_eq!(
        upstream.connections(),
        2,
        "the early answer's connection was reused"
    );
}

/// An upstream that answers without reading the body (a handler that ignores it) reads the
/// body's bytes as the start of the next request on that connection. Reused, the
/// connection would append the next caller's request (its cookies, its identity headers)
/// to a request the attacker wrote, and hand the attacker's answer to the next caller.
#[tokio::test]
async fn a_body_sent_after_an_early_answer_never_prefixes_the_next_request() {
    let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
    let finish_rx = Arc::new(Mutex::new(Some(finish_rx)));
    let upstream = RawUpstream::start(move |index, mut socket, seen| {
        let finish_rx = finish_rx.clone();
        async move {
            if index == 0 {
                read_head(&mut socket, &seen).await;
                // The head and part of the body of the answer, at once, unread body or not.
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nea";
                socket.write_all(head.as_bytes()).await.unwrap();
                let finish = finish_rx.lock().unwrap().take();
                if let Some(finish) = finish {
                    let _ = finish.await;
                }
                socket.write_all(b"rly").await.unwrap();
            }
            // A naive keep-alive server: whatever comes next is a request.
            serve_paths(socket, seen).await;
        }
    })
    .await;
    let proxy = proxy(&upstream).await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nx-auth-subject: root\r\nx-ignore: ";
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
        smuggled.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tcp.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    // The whole body after the answer's head, before its end.
    tcp.write_all(smuggled.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    finish_tx.send(()).unwrap();
    let mut rest = Vec::new();
    while !String::from_utf8_lossy(&answer[..n]).ends_with("early")
        && !String::from_utf8_lossy(&rest).ends_with("rly")
    {
        let mut chunk = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await {
            Ok(Ok(m)) if m > 0 => rest.extend_from_slice(&chunk[..m]),
            _ => break,
        }
    }

    let victim = get(&proxy.url("/victim"), &[("cookie", "session=VICTIM")]).await;
    assert_eq!(
        victim.body, "/victim",
        "the victim got another request's answer"
    );
    assert!(
        !upstream.requests().iter().any(|r| r.contains("/smuggled")),
        "the upstream read the attacker's body as a request: {:?}",
        upstream.requests()
    );
}

/// A stream over an mpsc receiver (no tokio-stream dependency).
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_replaced_before_use() {
    let closed = Arc::new(tokio::sync::Notify::new());
    let signal = closed.clone();
    let upstream = RawUpstream::start(move |_, mut socket, seen| {
        let signal = signal.clone();
        async move {
            if read_head(&mut socket, &seen).await.is_some() {
                socket.write_all(ok("once").as_bytes()).await.unwrap();
            }
            // Closes after one answer, without saying so.
            drop(socket);
            signal.notify_one();
        }
    })
    .await;
    let proxy = proxy(&upstream).await;
    assert_eq!(get(&proxy.url("/a"), &[]).await.body, "once");
    closed.notified().await;
    let answer = get(&proxy.url("/b"), &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "once");
    assert_eq!(upstream.connections(), 2);
}

/// The newest idle connection is tried first; found closed when the request is queued on
/// it (before a byte is written), the request goes to the next idle one, not a new one.
#[tokio::test]
async fn a_closed_idle_connection_is_passed_over_for_the_next_idle_one() {
    let closed = Arc::new(tokio::sync::Notify::new());
    let signal = closed.clone();
    let upstream = RawUpstream::start(move |_, mut socket, seen| {
        let signal = signal.clone();
        async move {
            while let Some(head) = read_head(&mut socket, &seen).await {
                if !head.starts_with("GET /slow ") {
                    socket.write_all(ok("live").as_bytes()).await.unwrap();
                    continue;
                }
                // Answered last, so parked last (the newest), then closed unannounced.
                tokio::time::sleep(Duration::from_millis(300)).await;
                socket.write_all(ok("slow").as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(socket);
                signal.notify_one();
                return;
            }
        }
    })
    .await;
    let proxy = proxy(&upstream).await;
    let slow_url = proxy.url("/slow");
    let slow = get(&slow_url, &[]);
    let fast = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        get(&proxy.url("/fast"), &[]).await
    };
    let (slow, fast) = tokio::join!(slow, fast);
    assert_eq!((slow.body.as_str(), fast.body.as_str()), ("slow", "live"));
    assert_eq!(upstream.connections(), 2);
    closed.notified().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let answer = get(&proxy.url("/after"), &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "live");
    assert_eq!(upstream.connections(), 2, "{:?}", upstream.requests());
}

#[tokio::test]
async fn a_request_the_upstream_may_have_received_is_never_sent_twice() {
    let upstream = RawUpstream::start(|index, mut socket, seen| async move {
        if index > 0 {
            return serve_paths(socket, seen).await;
        }
        // Reads the POST, then closes without answering.
        read_head(&mut socket, &seen).await;
    })
    .await;
    let proxy = proxy(&upstream).await;
    let request = http::Request::post(proxy.url("/pay"))
        .body(Full::new(Bytes::from_static(b"")))
        .unwrap();
    let answer = send(request).await;
    assert_eq!(answer.status, 502);
    let posts = upstream
        .requests()
        .iter()
        .filter(|l| l.starts_with("POST /pay"))
        .count();
    assert_eq!(posts, 1, "{:?}", upstream.requests());
}

/// RFC 9112 §6.3: a response framed by `Transfer-Encoding` that also names a length is
/// forwarded without the length; the client must not be told a length the body lacks.
#[tokio::test]
async fn a_length_next_to_a_transfer_coding_is_not_forwarded() {
    let upstream = RawUpstream::start(|_, mut socket, seen| async move {
        while read_head(&mut socket, &seen).await.is_some() {
            let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
            if socket.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let proxy = proxy(&upstream).await;
    let answer = get(&proxy.url("/framed"), &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "hello");
    assert_eq!(answer.header("content-length"), None);
}

/// A `101` to a request that asked for no upgrade is a broken upstream: `502`, and the
/// connection (the upstream now speaks something else on it) is never reused.
#[tokio::test]
async fn an_unasked_switch_of_protocols_is_a_502_and_its_connection_is_dropped() {
    let upstream = RawUpstream::start(|index, mut socket, seen| async move {
        if index == 0 {
            read_head(&mut socket, &seen).await;
            let _ = socket
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n")
                .await;
            let mut rest = Vec::new();
            let _ = socket.read_to_end(&mut rest).await;
            return;
        }
        serve_paths(socket, seen).await;
    })
    .await;
    let proxy = proxy(&upstream).await;
    let answer = get(&proxy.url("/plain"), &[]).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    let answer = get(&proxy.url("/after"), &[]).await;
    assert_eq!(answer.body, "/after");
    assert_eq!(upstream.connections(), 2);
}
