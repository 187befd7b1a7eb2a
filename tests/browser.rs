//! A real browser against `gatehouse demo`: headless Chromium (Debian's, driven by
//! playwright-core from `tests/browser/demo.js`) loads the demo page, which gets a 6-second
//! token, trades it for a single-use ticket and chats over a WebSocket through the proxy;
//! the ticket must not open a second socket, and the proxy must close the page's socket with
//! 4401 when the token expires. The proxy's metrics must agree with what the page saw.
//!
//! Needs `/usr/bin/chromium`, `node` and playwright-core in `tests/browser`, all installed by
//! `.ci/setup`. Under `CI=true` a missing one fails the test; elsewhere it says why it skips.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::browser::{browser_dir, describe, prerequisites, run_bounded, CHROMIUM};
use support::Demo;

/// demo.js gives itself 30 s; Chromium's start and the process exit get the rest.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn the_demo_page_chats_refuses_a_spent_ticket_and_closes_with_4401_on_expiry() {
    if !prerequisites() {
        return;
    }
    let demo = Demo::start();

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).unwrap();
    let screenshot = shots.join("demo-expired.png");
    let _ = std::fs::remove_file(&screenshot);

    let started = Instant::now();
    let (output, timed_out) = run_bounded(
        Command::new("node")
            .arg(browser_dir().join("demo.js"))
            .arg(&demo.page)
            .arg(&screenshot)
            .env("CHROMIUM", CHROMIUM),
        BROWSER_TIMEOUT,
    );
    let took = started.elapsed();
    assert!(
        !timed_out && output.status.success(),
        "demo.js failed (timed out: {timed_out}) after {took:?}: {}\n--- gatehouse demo ---\n{}",
        describe(&output),
        demo.log()
    );
    eprintln!(
        "browser test: demo.js took {took:.1?}; screenshot {}",
        screenshot.display()
    );

    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON result line from demo.js: {}", describe(&output)));
    let result: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(result["ok"], true, "{result:#}");

    // The hub signs what it relays with the X-Auth-Subject the proxy attached.
    let subject = result["subject"].as_str().unwrap();
    let digits = subject
        .strip_prefix("guest-")
        .unwrap_or_else(|| panic!("{result:#}"));
    assert!(
        (1..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()),
        "subject {subject:?}"
    );
    let messages = result["messages"].as_array().unwrap();
    let said = serde_json::json!({ "from": subject, "text": result["sent"] });
    assert!(messages.contains(&said), "{said} not among {messages:?}");
    let joined = serde_json::json!({ "from": "hub", "text": format!("{subject} joined") });
    assert!(
        messages.contains(&joined),
        "{joined} not among {messages:?}"
    );

    // The spent ticket: the browser's second socket never opened.
    assert_eq!(result["replay"]["opened"], false, "{result:#}");
    assert_eq!(result["replay"]["code"], 1006, "{result:#}");

    // Expiry: 4401 "token expired", shown in #status.
    assert_eq!(result["closed"]["code"], 4401, "{result:#}");
    assert_eq!(result["closed"]["reason"], "token expired", "{result:#}");
    // Not before the token's own `exp` (6 s after minting; the proxy adds the 1 s leeway).
    let lived = result["expired_after_open_ms"].as_u64().unwrap();
    assert!(
        lived >= 5_000,
        "the socket closed {lived} ms after opening, before the token expired"
    );
    let status = result["status"].as_str().unwrap();
    assert!(
        status.contains("connection closed: token expired (4401)"),
        "#status says {status:?}"
    );

    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is not a plausible screenshot ({} bytes)",
        screenshot.display(),
        png.len()
    );

    // The proxy saw the same story: one ticket issued and redeemed, the replay refused as an
    // invalid ticket (not as a bad Origin), and one session ended by the token's expiry.
    let metric = |series: &str| {
        demo.metric(series)
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
    };
    assert_eq!(metric(r#"gatehouse_tickets_total{result="issued"}"#), 1.0);
    assert_eq!(metric(r#"gatehouse_tickets_total{result="redeemed"}"#), 1.0);
    assert_eq!(
        metric(r#"gatehouse_tickets_total{result="invalid_ticket"}"#),
        1.0
    );
    assert_eq!(
        metric(r#"gatehouse_websocket_upgrades_total{result="ok",route="/chat"}"#),
        1.0
    );
    assert_eq!(
        metric(r#"gatehouse_websocket_closes_total{reason="token_expired",route="/chat"}"#),
        1.0
    );
    assert_eq!(
        demo.metric(
            r#"gatehouse_websocket_upgrades_total{result="origin_not_allowed",route="/chat"}"#
        ),
        None
    );
}
