//! Shutdown is a drain with a deadline: in-flight requests finish, `/readyz` is 503 while
//! draining, new connections are refused, and what outlives the grace period is cut.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::*;

fn config(upstream: &str, grace: &str) -> String {
    format!(
        r#"
[shutdown]
grace = "{grace}"
[[route]]
path = "/"
upstream = "{upstream}"
auth = "none"
timeout = "30s"
"#
    )
}

#[tokio::test]
async fn in_flight_requests_finish_while_readyz_says_draining() {
    let upstream = Upstream::start(|_| async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        http::Response::new(full("finished"))
    })
    .await;
    let proxy = TestProxy::start(&config(&upstream.url(), "10s")).await;
    let (url, admin) = (proxy.url("/slow"), proxy.admin_url("/readyz"));
    assert_eq!(get(&admin, &[]).await.status, 200);

    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    assert!(
        eventually(Duration::from_secs(5), || async {
            !upstream.requests().is_empty()
        })
        .await
    );
    let addr = proxy.addr;
    let drain = tokio::spawn(proxy.shutdown());

    assert!(
        eventually(Duration::from_secs(2), || async {
            get(&admin, &[]).await.status == 503
        })
        .await,
        "/readyz did not turn 503 while draining"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting during the drain"
    );
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "finished");
    tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_grace_period_bounds_the_drain() {
    let upstream = Upstream::start(|_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        http::Response::new(full("too late"))
    })
    .await;
    let proxy = TestProxy::start(&config(&upstream.url(), "500ms")).await;
    let url = proxy.url("/stuck");
    let stuck = tokio::spawn(async move {
        let request = http::Request::get(url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        client().request(request).await
    });
    assert!(
        eventually(Duration::from_secs(5), || async {
            !upstream.requests().is_empty()
        })
        .await
    );
    let started = Instant::now();
    proxy.shutdown().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "drain took {took:?}"
    );
    stuck.abort();
}

#[tokio::test]
async fn open_websockets_get_1001_when_the_grace_period_ends() {
    let hub = WsHub::start().await;
    let toml = format!(
        "[shutdown]\ngrace = \"700ms\"\n[[route]]\npath = \"/hub\"\nupstream = \"{}\"\nauth = \"none\"\nwebsocket = true\n",
        hub.url()
    );
    let proxy = TestProxy::start(&toml).await;
    let (mut socket, _) = ws_connect(&format!("ws://{}/hub", proxy.addr), &[])
        .await
        .unwrap();
    let started = Instant::now();
    let drain = tokio::spawn(proxy.shutdown());
    let close = close_of(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(close, Some((1001, "going away".to_string())));
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "closed before the grace period: {:?}",
        started.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .unwrap()
        .unwrap();
    assert!(eventually(Duration::from_secs(2), || async { hub.conns()[0].ended }).await);
}

/// The whole drain on the real binary: SIGTERM while a request is in flight and a
/// WebSocket is open; the request completes, `/readyz` turns 503, the WebSocket gets 1001
/// when the grace period ends, and the process exits 0.
#[tokio::test]
async fn the_binary_drains_on_sigterm_and_exits_zero() {
    drains_on_sigterm(2).await;
}

/// The same on one worker thread, which Tokio's current-thread scheduler serves: the
/// signal, the drain and the connections all share that thread.
#[tokio::test]
async fn the_binary_on_one_thread_drains_on_sigterm_too() {
    drains_on_sigterm(1).await;
}

async fn drains_on_sigterm(worker_threads: usize) {
    let upstream = Upstream::start(|_| async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        http::Response::new(full("finished"))
    })
    .await;
    let hub = WsHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
             [runtime]\nworker_threads = {worker_threads}\n\
             [shutdown]\ngrace = \"1500ms\"\n\
             [[route]]\npath = \"/slow\"\nupstream = \"{}\"\nauth = \"none\"\n\
             [[route]]\npath = \"/hub\"\nupstream = \"{}\"\nauth = \"none\"\nwebsocket = true\n",
            upstream.url(),
            hub.url()
        ),
    )
    .unwrap();
    let (process, addr) = Proc::start(&config);
    let readyz = format!("http://{}/readyz", process.admin);
    assert_eq!(get(&readyz, &[]).await.status, 200);
    let (mut socket, _) = ws_connect(&format!("ws://{addr}/hub"), &[]).await.unwrap();
    let slow = format!("http://{addr}/slow");
    let in_flight = tokio::spawn(async move { get(&slow, &[]).await });
    assert!(
        eventually(Duration::from_secs(5), || async {
            !upstream.requests().is_empty()
        })
        .await
    );

    process.signal("TERM");
    let signalled = Instant::now();
    assert!(
        eventually(Duration::from_secs(2), || async {
            get(&readyz, &[]).await.status == 503
        })
        .await,
        "/readyz did not turn 503 while draining"
    );
    let answer = in_flight.await.unwrap();
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_str()),
        (200, "finished")
    );
    let close = close_of(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(close, Some((1001, "going away".to_string())));
    assert!(
        signalled.elapsed() >= Duration::from_millis(1300),
        "closed before the grace period"
    );
    let (code, logs) = tokio::task::spawn_blocking(move || process.wait())
        .await
        .unwrap();
    assert_eq!(code, 0, "{logs}");
}

/// A request the grace period cuts before it was answered still gets its access line:
/// status 0 (no response was sent) and reason `unfinished`.
#[tokio::test]
async fn a_request_cut_by_the_grace_period_leaves_an_access_line() {
    let upstream = Upstream::start(|_| async {
        tokio::time::sleep(Duration::from_secs(20)).await;
        http::Response::new(full("too late"))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "{LOOPBACK_LISTENERS}\n[shutdown]\ngrace = \"500ms\"\n\
             [[route]]\npath = \"/slow\"\nupstream = \"{}\"\nauth = \"none\"\n",
            upstream.url()
        ),
    )
    .unwrap();
    let (process, addr) = Proc::start(&config);
    let slow = format!("http://{addr}/slow/x");
    let in_flight = tokio::spawn(async move { client().get(slow.parse().unwrap()).await });
    assert!(
        eventually(Duration::from_secs(5), || async {
            !upstream.requests().is_empty()
        })
        .await
    );
    process.signal("TERM");
    let (code, logs) = tokio::task::spawn_blocking(move || process.wait())
        .await
        .unwrap();
    assert_eq!(code, 0, "{logs}");
    assert!(
        in_flight.await.unwrap().is_err(),
        "the request was answered"
    );
    let cut: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "gatehouse::access" && v["path"] == "/slow/x")
        .collect();
    assert_eq!(cut.len(), 1, "{logs}");
    assert_eq!(
        (&cut[0]["status"], &cut[0]["reason"]),
        (&serde_json::json!(0), &serde_json::json!("unfinished")),
        "{logs}"
    );
    // The upstream had it, until the grace period (500 ms) cut it: not -1, "not asked".
    let waited = cut[0]["upstream_ms"].as_f64().unwrap_or(-1.0);
    let total = cut[0]["duration_ms"].as_f64().unwrap_or(0.0);
    assert!(waited >= 450.0 && waited <= total, "{logs}");
}

/// A connection that has not finished its TLS handshake holds no request: the drain ends
/// it at once, rather than waiting the whole grace period for a ClientHello that one
/// client started and never finished.
#[tokio::test]
async fn a_half_done_tls_handshake_does_not_hold_the_drain() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    Ca::new().issue(dir.path(), "drain");
    let upstream = Upstream::echo().await;
    let toml = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\ntls.cert = \"{d}/tls.crt\"\ntls.key = \"{d}/tls.key\"\n\
         [limits]\nheader_read_timeout = \"60s\"\n{rest}",
        d = dir.path().display(),
        rest = config(&upstream.url(), "30s")
    );
    let proxy = TestProxy::start(&toml).await;
    let mut half = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    // A TLS record header announcing a 512-byte handshake message, and one byte of it.
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    proxy.shutdown().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "the drain waited {took:?}");
    drop(half);
}
