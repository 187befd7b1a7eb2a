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
