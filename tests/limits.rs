//! Each limit triggers and answers as configured, and is counted in
//! `gatehouse_limit_hits_total`; request smuggling attempts on a raw socket get 400 and
//! never reach the upstream. (`max_connections` is in websocket.rs, where upgraded
//! connections hold their slots; `header_read_timeout` and 431 in upstream.rs.)

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use http::Request;
use http_body_util::BodyExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn route(upstream: &str, extra: &str) -> String {
    format!("[[route]]\npath = \"/\"\nupstream = \"{upstream}\"\nauth = \"none\"\n{extra}\n")
}

async fn hits(proxy: &TestProxy, limit: &str) -> f64 {
    proxy
        .metric(&format!("gatehouse_limit_hits_total{{limit=\"{limit}\"}}"))
        .await
}

/// Sends raw bytes on a fresh connection; returns everything the proxy answered until it
/// closed the connection (or 5 s passed).
async fn raw(proxy: &TestProxy, request: &[u8]) -> String {
    let mut socket = TcpStream::connect(proxy.addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> Option<u16> {
    answer.split(' ').nth(1).and_then(|s| s.parse().ok())
}

#[tokio::test]
async fn connections_per_ip_over_the_cap_get_429_until_one_closes() {
    let upstream = Upstream::echo().await;
    let toml = format!(
        "[limits]\nmax_connections_per_ip = 2\n{}",
        route(&upstream.url(), "")
    );
    let proxy = TestProxy::start(&toml).await;
    let held = [
        TcpStream::connect(proxy.addr).await.unwrap(),
        TcpStream::connect(proxy.addr).await.unwrap(),
    ];
    assert!(
        eventually(Duration::from_secs(5), || async {
            proxy.metric("gatehouse_connections_open").await == 2.0
        })
        .await
    );
    let refused = get(&proxy.url("/x"), &[("x-request-id", "held-3")]).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.json()["error"], "rate_limited");
    // Written by gatehouse before any request is served, it still carries the request's id.
    assert_eq!(refused.header("x-request-id"), Some("held-3"));
    assert_eq!(hits(&proxy, "max_connections_per_ip").await, 1.0);
    assert!(upstream.requests().is_empty());

    drop(held);
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(&proxy.url("/x"), &[]).await.status == 200
        })
        .await,
        "the address never got its places back"
    );
}

#[tokio::test]
async fn requests_per_ip_over_the_rate_get_429_with_retry_after() {
    let upstream = Upstream::echo().await;
    let toml = format!(
        "[limits]\nrequests_per_ip_per_second = 3\n{}",
        route(&upstream.url(), "")
    );
    let proxy = TestProxy::start(&toml).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..10 {
        let answer = get(&proxy.url("/x"), &[]).await;
        if answer.status == 429 {
            retry_after = answer.header("retry-after").map(String::from);
            assert_eq!(answer.json()["error"], "rate_limited");
        }
        statuses.push(answer.status.as_u16());
    }
    let passed = statuses.iter().filter(|s| **s == 200).count();
    // Ten requests fall in one or two one-second windows: three pass in each.
    assert!((3..=6).contains(&passed), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(
        upstream.requests().len(),
        passed,
        "a refused request was forwarded"
    );
    assert_eq!(hits(&proxy, "requests_per_ip").await, (10 - passed) as f64);
}

#[tokio::test]
async fn idle_keep_alive_and_slow_heads_have_their_own_timeouts() {
    let upstream = Upstream::echo().await;
    let toml = format!(
        "[limits]\nidle_timeout = \"1500ms\"\nheader_read_timeout = \"300ms\"\n{}",
        route(&upstream.url(), "")
    );
    let proxy = TestProxy::start(&toml).await;
    let request = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut socket = TcpStream::connect(proxy.addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    // Idle longer than the header timeout, shorter than the idle timeout: still open.
    tokio::time::sleep(Duration::from_millis(800)).await;
    socket.write_all(request).await.unwrap();
    let n = socket.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "an idle keep-alive connection was cut by the header timeout"
    );

    // Then left alone: closed by the idle timeout.
    let idle_from = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "not closed when idle: {closed:?}"
    );
    assert!(idle_from.elapsed() >= Duration::from_millis(1200));
    assert_eq!(hits(&proxy, "idle_timeout").await, 1.0);

    // A head that starts and stalls is dropped after the header timeout, well before idle.
    let mut slow = TcpStream::connect(proxy.addr).await.unwrap();
    slow.write_all(b"GET /x HTTP/1.1\r\nHost:").await.unwrap();
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");
    assert!(started.elapsed() < Duration::from_millis(1200));
    assert_eq!(hits(&proxy, "header_read_timeout").await, 1.0);
    assert_eq!(upstream.requests().len(), 2);
}

/// Between requests an HTTP/2 client sends frames that are not requests (here a PING):
/// they must not start the header clock; the connection closes by the idle clock, with GOAWAY.
#[tokio::test]
async fn http2_connections_between_requests_run_only_the_idle_clock() {
    let upstream = Upstream::echo().await;
    let toml = format!(
        "[limits]\nidle_timeout = \"1500ms\"\nheader_read_timeout = \"300ms\"\n{}",
        route(&upstream.url(), "")
    );
    let proxy = TestProxy::start(&toml).await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut client, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let mut ping_pong = connection.ping_pong().unwrap();
    let closed = tokio::spawn(async move { connection.await.is_ok() });
    let uri = proxy.url("/x");
    let mut get = async || {
        client = client.clone().ready().await.unwrap();
        let request = Request::get(uri.as_str()).body(()).unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        let mut response = response.await.unwrap();
        while let Some(chunk) = response.body_mut().data().await {
            let chunk = chunk.unwrap();
            let _ = response
                .body_mut()
                .flow_control()
                .release_capacity(chunk.len());
        }
        response.status()
    };

    assert_eq!(get().await, 200);
    ping_pong.ping(h2::Ping::opaque()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !closed.is_finished(),
        "a PING between requests got the connection dropped"
    );
    assert_eq!(get().await, 200);

    let idle_from = Instant::now();
    let clean = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("an idle HTTP/2 connection was never closed")
        .unwrap();
    assert!(clean, "closed without GOAWAY");
    assert!(idle_from.elapsed() >= Duration::from_millis(1200));
    assert_eq!(hits(&proxy, "idle_timeout").await, 1.0);
    assert_eq!(hits(&proxy, "header_read_timeout").await, 0.0);
}

#[tokio::test]
async fn bodies_over_the_route_limit_get_413() {
    let upstream = Upstream::start(|request| async move {
        let body = request.into_body().collect().await.unwrap().to_bytes();
        http::Response::new(full(format!("got {}", body.len())))
    })
    .await;
    let toml = format!(
        "{}{}",
        route(&upstream.url(), "max_body_bytes = 1024")
            .replace("path = \"/\"", "path = \"/small\""),
        route(&upstream.url(), "")
    );
    let proxy = TestProxy::start(&toml).await;
    let post = |path: &str, body: Vec<u8>| {
        Request::post(proxy.url(path))
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap()
    };

    let fits = send(post("/small", vec![b'x'; 1024])).await;
    assert_eq!(
        (fits.status.as_u16(), fits.body.as_str()),
        (200, "got 1024")
    );
    assert_eq!(upstream.requests().len(), 1);

    // Announced too large: refused before anything is sent upstream.
    let announced = send(post("/small", vec![b'x'; 1025])).await;
    assert_eq!(announced.status, 413);
    assert_eq!(announced.json()["error"], "payload_too_large");
    assert_eq!(
        upstream.requests().len(),
        1,
        "an oversized body was forwarded"
    );

    // Chunked, with no length up front: cut where it crosses the limit.
    let mut request =
        b"POST /small HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        request.extend_from_slice(b"200\r\n");
        request.extend_from_slice(&[b'x'; 0x200]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let chunked = raw(&proxy, &request).await;
    assert_eq!(status_of(&chunked), Some(413), "{chunked}");
    assert_eq!(hits(&proxy, "max_body_bytes").await, 2.0);

    // Other routes keep the default (10 MiB).
    let big = send(post("/other", vec![b'x'; 64 * 1024])).await;
    assert_eq!(big.body, "got 65536");
}

#[tokio::test]
async fn websocket_sessions_end_at_their_maximum_lifetime() {
    let hub = WsHub::start().await;
    let toml = route(&hub.url(), "websocket = true\nmax_lifetime = \"700ms\"");
    let proxy = TestProxy::start(&toml).await;
    let (mut client, _) = ws_connect(&format!("ws://{}/hub", proxy.addr), &[])
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        close_of(&mut client, Duration::from_secs(5)).await,
        Some((1001, "session lifetime reached".to_string()))
    );
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert!(
        eventually(Duration::from_secs(2), || async {
            hub.conns()
                .first()
                .is_some_and(|c| c.close_code == Some(1001))
        })
        .await,
        "the hub was not told"
    );
    assert_eq!(
        proxy
            .metric("gatehouse_websocket_closes_total{reason=\"max_lifetime\",route=\"/\"}")
            .await,
        1.0
    );
}

/// Each of these is answered 400 by the proxy and never reaches the upstream.
const SMUGGLING: &[(&str, &[u8])] = &[
    (
        "Content-Length with Transfer-Encoding",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ),
    (
        "Transfer-Encoding with Content-Length",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ),
    (
        "Content-Length with Transfer-Encoding after an empty line",
        b"\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ),
    (
        // Empty lines hyper skips must not count as a request of their own.
        "Content-Length with Transfer-Encoding after two empty lines",
        b"\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ),
    (
        "two different Content-Lengths",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello",
    ),
    (
        "Transfer-Encoding not ending in chunked",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    ),
    (
        "an unknown transfer coding",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "obs-fold",
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
    ),
    (
        "a space before the colon",
        b"GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
    ),
    (
        "NUL in a header value",
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-Bad: a\x00b\r\n\r\n",
    ),
    (
        "bare CR in a header value",
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-Bad: a\rb\r\n\r\n",
    ),
    (
        "an invalid header name",
        b"GET /x HTTP/1.1\r\nHost: a\r\nX(Bad): a\r\n\r\n",
    ),
    (
        "a signed Content-Length",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
    ),
];

#[tokio::test]
async fn smuggling_attempts_get_400_and_reach_nobody() {
    let upstream = Upstream::echo().await;
    let proxy = TestProxy::start(&route(&upstream.url(), "")).await;
    let mut wrong = Vec::new();
    for (name, request) in SMUGGLING {
        let answer = raw(&proxy, request).await;
        if status_of(&answer) != Some(400) || answer.matches("HTTP/1.1").count() != 1 {
            wrong.push(format!("{name}: {answer:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "not refused with one 400:\n{}",
        wrong.join("\n")
    );
    assert!(
        upstream.requests().is_empty(),
        "reached the upstream: {:?}",
        upstream.requests()
    );
    // The positive control: the same socket path forwards a well-formed request.
    let fine = raw(
        &proxy,
        b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&fine), Some(200), "{fine}");
    assert_eq!(upstream.requests().len(), 1);

    // Pipelined behind a good request with a body, in one write: the good one is answered,
    // the ambiguous one refused, and nothing after it is read.
    let pipelined = raw(
        &proxy,
        b"POST /good HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody\
          POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n\
          GET /after HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    let statuses: Vec<&str> = pipelined
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &pipelined[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "400"], "{pipelined}");
    let uris: Vec<String> = upstream.requests().iter().map(|r| r.uri.clone()).collect();
    assert_eq!(uris, ["/x", "/good"]);
}

/// Reads one response (head, and a `Content-Length` or chunked body) from a keep-alive
/// connection.
async fn read_response(socket: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let chunked = text[..head_end]
                    .to_ascii_lowercase()
                    .contains("transfer-encoding: chunked");
                if chunked && text[head_end..].contains("\r\n0\r\n\r\n") {
                    return text;
                }
                let length = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if !chunked && got.len() >= head_end + 4 + length {
                    return text;
                }
            }
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return text,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap_or_default()
}

const SMUGGLED: &[u8] = b"POST /smuggled HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
    Content-Length: 4\r\n\r\n0\r\n\r\n";

#[tokio::test]
async fn the_framing_guard_stays_on_after_an_upgrade_or_connect_that_did_not_switch() {
    let upstream = Upstream::echo().await;
    let proxy = TestProxy::start(&route(&upstream.url(), "")).await;
    let not_upgraded =
        b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let connect = b"CONNECT a:80 HTTP/1.1\r\nHost: a:80\r\n\r\n";

    // One after the other: the first answer is read before the ambiguous request is sent.
    for first in [&not_upgraded[..], &connect[..]] {
        let mut socket = TcpStream::connect(proxy.addr).await.unwrap();
        socket.write_all(first).await.unwrap();
        let answer = read_response(&mut socket).await;
        assert_ne!(status_of(&answer), Some(101), "{answer}");
        if answer.is_empty() {
            continue; // The connection was closed: nothing more can be smuggled on it.
        }
        socket.write_all(SMUGGLED).await.unwrap();
        let second = read_response(&mut socket).await;
        assert!(
            second.is_empty() || status_of(&second) == Some(400),
            "after {:?}: {second}",
            String::from_utf8_lossy(first)
        );
    }
    // Pipelined in one write behind a request that asked to upgrade and was not upgraded.
    let mut pipelined = not_upgraded.to_vec();
    pipelined.extend_from_slice(SMUGGLED);
    let answer = raw(&proxy, &pipelined).await;
    let statuses: Vec<&str> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &answer[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "400"], "{answer}");
    let uris: Vec<String> = upstream.requests().iter().map(|r| r.uri.clone()).collect();
    assert!(!uris.iter().any(|u| u.contains("smuggled")), "{uris:?}");
    assert_eq!(uris.iter().filter(|u| *u == "/a").count(), 2, "{uris:?}");
}
