//! The warnings an operator reads when something outside gatehouse fails name that thing and
//! why, in words: the key set URL (without its query) and whether the connection was
//! refused; the Redis store and its address; the upstream address and the cause chain, not
//! a Rust `Debug` dump. None of them carries a query string or a token.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The JSON log lines of `proc` with this `message`, waiting up to 10 s for one.
fn lines_with(proc: &Proc, message: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<Value> = proc
            .output()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == message)
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_outside_gatehouse_are_logged_with_what_failed_and_why() {
    let redis = RedisServer::start();
    let (keys, upstream) = (dead_port(), dead_port());
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hs");
    std::fs::write(&secret, SECRET).unwrap();
    let revocation = match &redis {
        Some(r) => format!("[revocation]\nstore = \"{}\"\n", r.url()),
        None => String::new(),
    };
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            r#"
{LOOPBACK_LISTENERS}
[log]
format = "json"
{revocation}
[[issuer]]
name = "remote"
issuer = "https://remote.example/"
audiences = ["api"]
jwks_url = "http://127.0.0.1:{keys}/jwks?key=jwkssecret"
[[issuer]]
name = "sts"
issuer = "{ISS}"
audiences = ["api"]
hmac_secret_file = {secret:?}
[[route]]
path = "/api"
upstream = "http://127.0.0.1:{upstream}"
"#
        ),
    )
    .unwrap();
    let (proc, addr) = Proc::start(&config);
    let token = mint_hs(&claims(ISS, "api", json!({})));

    // The upstream: refused, at its address.
    let answer = bearer(&format!("http://{addr}/api/x?access_token=q"), &token).await;
    assert_eq!(answer.status, 502);
    let failed = lines_with(&proc, "upstream request failed");
    let line = failed
        .first()
        .unwrap_or_else(|| panic!("{}", proc.output()));
    assert_eq!(line["upstream"], format!("127.0.0.1:{upstream}"), "{line}");
    let cause = line["cause"].as_str().unwrap_or_default();
    assert!(
        cause.to_ascii_lowercase().contains("connection refused") && !cause.contains("Some("),
        "{line}"
    );

    // The key set: its URL without the query, and refused.
    let refresh = lines_with(&proc, "key set refresh failed");
    let line = refresh
        .first()
        .unwrap_or_else(|| panic!("{}", proc.output()));
    let error = line["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with(&format!("GET http://127.0.0.1:{keys}/jwks: "))
            && error.to_ascii_lowercase().contains("connection refused"),
        "{line}"
    );

    // The Redis store: which one, and where.
    if let Some(mut redis) = redis {
        redis.stop();
        let failed = lines_with(&proc, "Redis command failed");
        let line = failed
            .first()
            .unwrap_or_else(|| panic!("{}", proc.output()));
        assert_eq!(line["store"], "revocation", "{line}");
        assert_eq!(line["address"], format!("127.0.0.1:{}", redis.port));
    }

    let (_, logs) = proc.terminate();
    for secret in ["jwkssecret", token.as_str(), "access_token=q"] {
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
}

/// A request the upstream was asked and did not answer in time: the warning names the
/// endpoint that was asked (on a route with several, the slow one), and the access line
/// says how long it waited. `upstream_ms` stays `-1` for a request the upstream never saw.
#[tokio::test(flavor = "multi_thread")]
async fn a_timed_out_request_names_its_endpoint_and_logs_the_time_it_waited() {
    let slow = Upstream::start(|_| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        http::Response::new(full("late"))
    })
    .await;
    let fast = Upstream::start(|_| async { http::Response::new(full("fast")) }).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "{LOOPBACK_LISTENERS}\n[log]\nformat = \"json\"\n\
             [[route]]\npath = \"/r\"\nupstream = [\"{}\", \"{}\"]\nauth = \"none\"\n\
             timeout = \"500ms\"\n\
             [[route]]\npath = \"/small\"\nupstream = \"{}\"\nauth = \"none\"\nmax_body_bytes = 4\n",
            fast.url(),
            slow.url(),
            fast.url()
        ),
    )
    .unwrap();
    let (proc, addr) = Proc::start(&config);
    let mut timed_out = false;
    for _ in 0..6 {
        let status = get(&format!("http://{addr}/r/x"), &[]).await.status;
        timed_out |= status == 504;
        if timed_out {
            break;
        }
    }
    assert!(timed_out, "no request reached the slow endpoint");
    let failed = lines_with(&proc, "upstream request failed");
    let line = failed
        .first()
        .unwrap_or_else(|| panic!("{}", proc.output()));
    assert_eq!(line["upstream"], slow.addr.to_string(), "{line}");
    assert!(
        line["cause"]
            .as_str()
            .is_some_and(|c| c.contains("within the route's timeout (500ms)")),
        "{line}"
    );

    // A body announced over max_body_bytes is refused before the upstream is asked.
    let body = http_body_util::Full::new(bytes::Bytes::from_static(b"0123456789"));
    let post = http::Request::post(format!("http://{addr}/small/x"));
    assert_eq!(send(post.body(body).unwrap()).await.status, 413);

    let (_, logs) = proc.terminate();
    let access: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "gatehouse::access")
        .collect();
    let late = access
        .iter()
        .find(|v| v["status"] == 504)
        .unwrap_or_else(|| panic!("{logs}"));
    let waited = late["upstream_ms"].as_f64().unwrap_or(-1.0);
    assert!((500.0..5000.0).contains(&waited), "{late}");
    let refused = access
        .iter()
        .find(|v| v["status"] == 413)
        .unwrap_or_else(|| panic!("{logs}"));
    assert_eq!(refused["upstream_ms"], -1, "{refused}");
}

/// Pass 17: every HTTP/2 stream in flight holds an upstream connection, so a few clients
/// could use up a low open-file limit, and then even `/healthz` stops answering. gatehouse
/// raises the soft limit to the hard one, and says when that is still below what its
/// limits allow, at start and after a reload that changes them.
#[test]
fn a_low_open_file_limit_is_raised_and_said_when_still_too_low() {
    let dir = tempfile::tempdir().unwrap();
    let soft_limit = |pid: u32| -> String {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        line.split_whitespace().nth(3).unwrap().to_string()
    };
    let wrapper = ["prlimit", "--nofile=256:4096", "--"];
    let warning = "the open-file limit is below what limits.max_connections × (1 + \
                   limits.http2_max_concurrent_streams) may open; raise it (ulimit -n, \
                   LimitNOFILE) or lower those limits, or callers can exhaust it";
    let route = "[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n";

    // The defaults allow 10,000 connections × 101: far above 4,096.
    let config = dir.path().join("defaults.toml");
    std::fs::write(
        &config,
        format!("{LOOPBACK_LISTENERS}\n[log]\nformat = \"json\"\n{route}"),
    )
    .unwrap();
    let (proc, _) = Proc::start_wrapped(&config, &wrapper);
    assert_eq!(
        soft_limit(proc.pid()),
        "4096",
        "the soft limit was not raised"
    );
    let said = lines_with(&proc, warning);
    assert_eq!(said.len(), 1, "{}", proc.output());
    assert_eq!(said[0]["open_file_limit"], 4096);
    assert_eq!(said[0]["worst_case"], 10_000 * 101 + 1024);
    proc.terminate();

    // Limits that fit: nothing to say.
    let config = dir.path().join("fits.toml");
    std::fs::write(
        &config,
        format!(
            "{LOOPBACK_LISTENERS}\n[log]\nformat = \"json\"\n[limits]\nmax_connections = 30\n\
             http2_max_concurrent_streams = 10\n{route}"
        ),
    )
    .unwrap();
    let (proc, _) = Proc::start_wrapped(&config, &wrapper);
    assert_eq!(soft_limit(proc.pid()), "4096");
    assert!(lines_with(&proc, "gatehouse listening").len() == 1);
    assert!(
        !proc.output().contains("open-file limit"),
        "{}",
        proc.output()
    );

    // A reload that raises the limits past it says so too.
    std::fs::write(
        &config,
        format!("{LOOPBACK_LISTENERS}\n[log]\nformat = \"json\"\n{route}"),
    )
    .unwrap();
    proc.signal("HUP");
    assert_eq!(
        lines_with(&proc, "config reloaded").len(),
        1,
        "{}",
        proc.output()
    );
    let said = lines_with(&proc, warning);
    assert_eq!(said.len(), 1, "{}", proc.output());
    assert_eq!(said[0]["max_connections"], 10_000);
    let (code, output) = proc.terminate();
    assert_eq!(code, 0, "{output}");
}
