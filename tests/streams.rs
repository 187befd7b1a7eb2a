//! A streamed response on an authenticated route (SSE: SignalR's fallback transport) ends
//! when the token that opened it expires or is revoked, as a WebSocket does. The client
//! sees a cut response (HTTP/1.1: the connection closes without the last chunk; HTTP/2:
//! the stream is reset), the upstream's stream is dropped, and the cut is counted. With
//! `close_on_expiry = false`, or on an anonymous route, the stream goes on.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::json;
use support::*;
use tokio::net::TcpStream;

const ADMIN: &str = "admin-secret-for-stream-tests";

async fn proxy(upstream: &str) -> TestProxy {
    let toml = format!(
        r#"
[admin]
addr = "127.0.0.1:0"
token_env = "ADMIN"

{HS_ISSUER}
leeway = "0s"

[[route]]
path = "/events"
upstream = "{upstream}"

[[route]]
path = "/unbound"
upstream = "{upstream}"
close_on_expiry = false

[[route]]
path = "/public"
upstream = "{upstream}"
auth = "none"
"#
    );
    TestProxy::start_with_secrets(&toml, &[("HS", SECRET), ("ADMIN", ADMIN)]).await
}

/// How an HTTP/1.1 stream ended: `Ok(events)` when it ended cleanly, `Err(events)` when it
/// was cut, or `None` when it was still going at `within`.
async fn read_stream(url: &str, token: &str, within: Duration) -> Option<Result<usize, usize>> {
    let request = http::Request::get(url)
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut events = 0;
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, body.frame()).await {
            Err(_) => return None,
            Ok(None) => return Some(Ok(events)),
            Ok(Some(Err(_))) => return Some(Err(events)),
            Ok(Some(Ok(frame))) => events += usize::from(frame.is_data()),
        }
    }
}

#[tokio::test]
async fn a_stream_is_cut_when_its_token_expires() {
    let (upstream, dropped) = Upstream::endless_events().await;
    let p = proxy(&upstream.url()).await;
    let started = Instant::now();
    let ended = read_stream(
        &p.url("/events"),
        &token_until("alice", 2, "a1"),
        Duration::from_secs(6),
    )
    .await;
    let Some(Err(events)) = ended else {
        panic!("the stream was not cut at the token's exp: {ended:?}");
    };
    assert!(events >= 5, "events flowed before the cut: {events}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "cut before the token expired"
    );
    let upstream_dropped = eventually(Duration::from_secs(2), || async {
        dropped.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert!(upstream_dropped, "the upstream's stream stayed open");
    let cut = "gatehouse_stream_cuts_total{reason=\"token_expired\",route=\"/events\"}";
    assert_eq!(p.metric(cut).await, 1.0);
}

#[tokio::test]
async fn a_stream_is_cut_when_its_token_is_revoked() {
    let (upstream, _) = Upstream::endless_events().await;
    let p = proxy(&upstream.url()).await;
    let url = p.url("/events");
    let reader = tokio::spawn(async move {
        read_stream(
            &url,
            &token_until("bob", 600, "b1"),
            Duration::from_secs(10),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.revoke(ADMIN, json!({ "sub": "bob" })).await, 204);
    let revoked = Instant::now();
    let ended = reader.await.unwrap();
    assert!(matches!(ended, Some(Err(n)) if n > 0), "{ended:?}");
    assert!(revoked.elapsed() < Duration::from_secs(3), "cut late");
    let cut = "gatehouse_stream_cuts_total{reason=\"token_revoked\",route=\"/events\"}";
    assert_eq!(p.metric(cut).await, 1.0);
}

#[tokio::test]
async fn an_http2_stream_is_reset_when_its_token_expires() {
    let (upstream, _) = Upstream::endless_events().await;
    let p = proxy(&upstream.url()).await;
    let tcp = TcpStream::connect(p.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get(format!("http://{}/events", p.addr))
        .header(
            "authorization",
            format!("Bearer {}", token_until("carol", 2, "c1")),
        )
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut events = 0;
    let ended = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            match body.data().await {
                Some(Ok(_)) => events += 1,
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    })
    .await
    .expect("the HTTP/2 stream was not cut at the token's exp");
    let reset = ended.expect_err("the stream ended as if it were complete");
    assert_eq!(reset.reason(), Some(h2::Reason::INTERNAL_ERROR), "{reset}");
    assert!(events >= 5, "events flowed before the cut: {events}");
}

#[tokio::test]
async fn without_close_on_expiry_or_a_token_the_stream_goes_on() {
    let (upstream, _) = Upstream::endless_events().await;
    let p = proxy(&upstream.url()).await;
    let (unbound_url, public_url, dan) = (
        p.url("/unbound"),
        p.url("/public"),
        token_until("dan", 1, "d1"),
    );
    let unbound = read_stream(&unbound_url, &dan, Duration::from_secs(3));
    let public = read_stream(&public_url, "not-read", Duration::from_secs(3));
    let (unbound, public) = tokio::join!(unbound, public);
    assert_eq!(unbound, None, "a close_on_expiry = false stream was ended");
    assert_eq!(public, None, "an anonymous stream was ended");
    let cuts = "gatehouse_stream_cuts_total{reason=\"token_expired\",route=\"/unbound\"}";
    assert_eq!(p.metric(cuts).await, 0.0);
}

/// A stream whose upstream always has data ready never makes the body wait; it must be
/// cut all the same. An HTTP/2 client that grants window slowly makes gatehouse read the
/// upstream only when data is already there.
#[tokio::test]
async fn a_stream_that_never_waits_is_cut_on_revocation() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let upstream = Upstream::start(|_| async {
        let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
        let flood = futures_util::stream::repeat_with(move || {
            Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))
        });
        http::Response::new(StreamBody::new(flood).boxed())
    })
    .await;
    let p = proxy(&upstream.url()).await;
    let tcp = TcpStream::connect(p.addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(16 * 1024)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get(format!("http://{}/events", p.addr))
        .header(
            "authorization",
            format!("Bearer {}", token_until("erin", 600, "e1")),
        )
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let mut body = response.await.unwrap().into_body();
    let reader = tokio::spawn(async move {
        loop {
            match body.data().await {
                Some(Ok(data)) => {
                    let _ = body.flow_control().release_capacity(data.len());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.revoke(ADMIN, json!({ "sub": "erin" })).await, 204);
    let ended = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the stream was not cut after the revocation")
        .unwrap();
    let reset = ended.expect("the stream ended as if it were complete");
    assert_eq!(reset.reason(), Some(h2::Reason::INTERNAL_ERROR), "{reset}");
}

/// A long poll (SignalR's last fallback) is one request the upstream holds until there
/// are messages: an answer slower than a second is handed over only if the caller was not
/// revoked in the meantime.
#[tokio::test]
async fn a_long_poll_answered_after_a_revocation_is_withheld() {
    let upstream = Upstream::start(|_| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        http::Response::new(full("messages"))
    })
    .await;
    let p = proxy(&upstream.url()).await;
    let url = p.url("/events");
    let (gina, hal) = (
        token_until("gina", 600, "g1"),
        token_until("hal", 600, "h1"),
    );
    let (gina_url, hal_url) = (url.clone(), url);
    let revoked = tokio::spawn(async move { bearer(&gina_url, &gina).await });
    let kept = tokio::spawn(async move { bearer(&hal_url, &hal).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.revoke(ADMIN, json!({ "sub": "gina" })).await, 204);
    let revoked = revoked.await.unwrap();
    assert_eq!(revoked.status, 401, "{}", revoked.body);
    assert_eq!(revoked.json()["error"], "token_revoked");
    let kept = kept.await.unwrap();
    assert_eq!(
        (kept.status.as_u16(), kept.body.as_str()),
        (200, "messages")
    );
}
