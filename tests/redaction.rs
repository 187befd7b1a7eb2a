//! No token in any log line: run the real binary at debug level, send tokens by header,
//! query and cookie down good and bad paths, stop it with SIGTERM, and search everything
//! it printed.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn no_token_reaches_any_log_line_at_debug_level() {
    let upstream = Upstream::echo().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    let key = Key::rsa("rsa1", "k1");
    std::fs::write(
        &config,
        format!(
            r#"
{LOOPBACK_LISTENERS}
[log]
format = "json"
{rs256}
[[route]]
path = "/api"
upstream = "{up}"
tokens = ["header", "query:access_token", "cookie:session"]
[[route]]
path = "/dead"
upstream = "http://{dead}"
tokens = ["query:custom_param"]
"#,
            rs256 = rs256_issuer(&key),
            up = upstream.url()
        ),
    )
    .unwrap();
    let (proc, addr) = Proc::start(&config);
    let url = |p: &str| format!("http://{addr}{p}");

    let good = mint(&key, &claims(ISS, "api", json!({})));
    let expired = mint(&key, &claims(ISS, "api", json!({"exp": now() - 3600})));
    let forged = mint(&Key::rsa("attacker", "k1"), &claims(ISS, "api", json!({})));
    let opaque = "opaque-secret-value-1234567890";
    let mut tokens = vec![
        good.clone(),
        expired.clone(),
        forged.clone(),
        opaque.to_string(),
    ];

    let mut sent = 0;
    for t in &tokens {
        sent += 4;
        bearer(&url("/api/h"), t).await;
        get(&url(&format!("/api/q?a=1&access_token={t}&b=2")), &[]).await;
        get(&url("/api/c"), &[("cookie", &format!("x=1; session={t}"))]).await;
        get(&url(&format!("/nowhere?access_token={t}&ticket={t}")), &[]).await;
    }
    assert_eq!(bearer(&url("/api/h"), &good).await.status, 200);
    sent += 1;
    let dead_answer = get(
        &url(&format!("/dead/x?custom_param={good}&id_token={good}")),
        &[],
    )
    .await;
    assert_eq!(dead_answer.status, 502);
    assert!(!dead_answer.body.contains(&good));
    sent += 1;
    tokens.push("hunter2-not-logged".into());
    get(
        &url("/api/x?code=hunter2-not-logged"),
        &[("authorization", "Basic aHVudGVyMg==")],
    )
    .await;
    sent += 1;

    let (code, logs) = proc.terminate();
    assert_eq!(code, 0, "gatehouse did not exit cleanly on SIGTERM");
    for t in &tokens {
        let signature = t.rsplit('.').next().unwrap();
        assert!(!logs.contains(t.as_str()), "a token appears in the logs");
        assert!(
            !logs.contains(signature),
            "a token signature appears in the logs"
        );
    }
    assert!(logs.contains("access_token=REDACTED"), "{logs}");
    assert!(logs.contains("custom_param=REDACTED"));
    assert!(logs.contains("\"status\":502"));
    assert!(
        logs.lines().any(|l| l.contains("DEBUG")),
        "the test did not run at debug level"
    );
    // Every request produced exactly one access line.
    let access = logs
        .lines()
        .filter(|l| l.contains("gatehouse::access"))
        .count();
    assert_eq!(access, sent);

    // Times as the README writes them: `-1` when the upstream was not asked (no route),
    // else milliseconds to the microsecond, never float noise.
    for line in logs.lines().filter(|l| l.contains("gatehouse::access")) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let raw = |key: &str| {
            let rest = line
                .split(&format!("\"{key}\":"))
                .nth(1)
                .unwrap_or_default();
            rest.split(',').next().unwrap_or_default().to_string()
        };
        if v["route"] == "-" {
            assert_eq!(raw("upstream_ms"), "-1", "{line}");
        }
        for key in ["upstream_ms", "duration_ms"] {
            let decimals = raw(key).split('.').nth(1).map_or(0, str::len);
            assert!(decimals <= 3, "{key} in {line}");
        }
    }
}
