//! `gatehouse health` against a real gatehouse: the binary probes the admin listener's
//! `/healthz` and exits 0 when it answers 200, 1 with a reason on stderr otherwise.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};

use support::TestProxy;

const CONFIG: &str = r#"
[listen]
addr = "127.0.0.1:0"

[admin]
addr = "127.0.0.1:0"

[[issuer]]
name = "local"
issuer = "https://issuer.test/"
audiences = ["api"]
hmac_secret_env = "GATEHOUSE_TEST_HS"

[[route]]
path = "/"
upstream = "http://127.0.0.1:9"
"#;

fn health(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("health")
        .args(args)
        .env_remove("GATEHOUSE_CONFIG")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn running() -> TestProxy {
    TestProxy::start_with_secrets(
        CONFIG,
        &[("GATEHOUSE_TEST_HS", "0123456789abcdef0123456789abcdef")],
    )
    .await
}

/// An address nothing listens on: bound, then closed.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_gatehouse_is_healthy_by_flag_and_by_config_file() {
    let proxy = running().await;
    let admin = proxy.admin.to_string();
    let out = tokio::task::spawn_blocking(move || health(&["--addr", &admin]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The address from admin.addr in the config file, 0.0.0.0 probed on loopback.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    let text = CONFIG.replace(
        "[admin]\naddr = \"127.0.0.1:0\"",
        &format!("[admin]\naddr = \"0.0.0.0:{}\"", proxy.admin.port()),
    );
    std::fs::write(&config, text).unwrap();
    let path = config.display().to_string();
    let out = tokio::task::spawn_blocking(move || health(&["--config", &path]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    proxy.shutdown().await;
}

#[test]
fn nothing_listening_is_unhealthy_with_the_reason() {
    let addr = closed_port();
    let out = health(&["--addr", &addr.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("unhealthy: nothing answers at {addr}")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_gatehouse_is_unhealthy() {
    let proxy = running().await;
    let admin = proxy.admin;
    proxy.shutdown().await;
    let out = tokio::task::spawn_blocking(move || health(&["--addr", &admin.to_string()]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing answers"), "{}", stderr(&out));
}

/// A listener that reads the request and answers `answer`, once.
fn answering(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request);
            let _ = conn.write_all(answer);
        }
    });
    addr
}

#[test]
fn another_status_or_not_http_is_unhealthy() {
    let addr = answering(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
    let out = health(&["--addr", &addr.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("answered /healthz with 503"),
        "{}",
        stderr(&out)
    );

    let addr = answering(b"SSH-2.0-OpenSSH_9.2\r\n");
    let out = health(&["--addr", &addr.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("did not answer /healthz with HTTP"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_listener_that_never_answers_times_out() {
    // Accepted by the kernel's backlog, never read: the probe's own deadline ends it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let out = health(&["--addr", &addr.to_string(), "--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("did not answer /healthz within 300ms"),
        "{}",
        stderr(&out)
    );
    drop(listener);
}

#[test]
fn an_unreadable_config_is_unhealthy_and_says_so() {
    let out = health(&["--config", "/nonexistent/gatehouse.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("/nonexistent/gatehouse.toml") && err.contains("--addr"),
        "{err}"
    );
}

#[test]
fn a_zero_timeout_is_a_bad_argument_not_an_unhealthy_target() {
    let addr = closed_port();
    for bad in ["0s", "0ms", "1ns", "99ms", "soon"] {
        let out = health(&["--addr", &addr.to_string(), "--timeout", bad]);
        assert_eq!(
            out.status.code(),
            Some(64),
            "--timeout {bad}: {}",
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains("--timeout") && !err.contains("unhealthy"),
            "{err}"
        );
    }
    let err = stderr(&health(&["--addr", &addr.to_string(), "--timeout", "0s"]));
    assert!(err.contains("must be at least 100ms"), "{err}");
}
