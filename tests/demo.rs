//! `gatehouse demo`'s printed walkthrough, run as a newcomer runs it: every `curl` line of
//! steps 1 to 5 through a shell with the printed `TOKEN` and `ADMIN_TOKEN`, then the ticket
//! from step 5 redeemed on the `/chat` WebSocket the way the walkthrough says, once.
//!
//! Needs `curl` (installed by `.ci/setup`); a missing one is a skip outside CI.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use serde_json::Value;
use support::{ensure_installed, next_message, ws_connect, Demo};
use tokio_tungstenite::tungstenite::Message;

/// Runs one printed command line in `sh` with the printed tokens set, as a user pasting it.
fn run(demo: &Demo, line: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", line])
        .env("TOKEN", demo.printed("TOKEN"))
        .env("ADMIN_TOKEN", demo.printed("ADMIN_TOKEN"))
        .output()
        .unwrap();
    assert!(out.status.success(), "`{line}` failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().replace('\r', "")
}

/// The status of a `curl -i` answer.
fn status(answer: &str) -> u16 {
    answer
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// The JSON body of a `curl -s` or `curl -i` answer.
fn body(answer: &str) -> Value {
    let json = answer.split_once("\n\n").map_or(answer, |(_, b)| b);
    serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_step_of_the_printed_walkthrough_does_what_it_says() {
    if !ensure_installed("curl", "curl") {
        return;
    }
    let demo = Demo::start();
    let commands = |n| {
        let found = demo.step_commands(n);
        assert!(!found.is_empty(), "step {n} prints no curl line");
        found
    };

    // 1. No token: 401 with WWW-Authenticate.
    let answer = run(&demo, &commands(1)[0]);
    assert_eq!(status(&answer), 401, "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{answer}"
    );

    // 2. The header token: the echo sees the subject and no Authorization.
    let echo = body(&run(&demo, &commands(2)[0]));
    assert_eq!(echo["headers"]["x-auth-subject"], "alice", "{echo}");
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");

    // 3. The query token: gone from the URI the upstream sees.
    let echo = body(&run(&demo, &commands(3)[0]));
    assert_eq!(echo["uri"], "/api/hello?room=1", "{echo}");

    // 4. The role: TOKEN is refused, ADMIN_TOKEN passes.
    let step4 = commands(4);
    let answer = run(&demo, &step4[0]);
    assert_eq!(status(&answer), 403, "{answer}");
    assert_eq!(body(&answer)["error"], "insufficient_scope", "{answer}");
    let echo = body(&run(&demo, &step4[1]));
    assert_eq!(echo["headers"]["x-auth-subject"], "root", "{echo}");

    // 5. The ticket: the printed line shows its status, and the ticket is bound to /chat.
    let answer = run(&demo, &commands(5)[0]);
    assert_eq!(status(&answer), 201, "step 5 as printed:\n{answer}");
    let ticket = body(&answer)["ticket"].as_str().unwrap().to_string();

    // "then open ws://ADDR/chat?ticket=<ticket> with any WebSocket client"
    let log = demo.log();
    let url = log
        .split_whitespace()
        .find(|w| w.starts_with("ws://") && w.ends_with("?ticket=<ticket>"))
        .unwrap_or_else(|| panic!("step 5 names no ws:// URL:\n{log}"))
        .replace("<ticket>", &ticket);
    let (mut socket, _) = ws_connect(&url, &[])
        .await
        .unwrap_or_else(|s| panic!("the ticket from step 5 was refused with {s}"));
    let joined = next_message(&mut socket).await;
    assert_eq!(
        joined,
        Some(Message::text(r#"{"from":"hub","text":"alice joined"}"#)),
        "the hub saw the upgrade as someone else"
    );
    // Single-use, as the walkthrough says.
    assert_eq!(ws_connect(&url, &[]).await.err(), Some(401));
    assert_eq!(
        demo.metric(r#"gatehouse_tickets_total{result="redeemed"}"#),
        Some(1.0)
    );
}

/// The README's "What the demo does" shows the same commands the demo prints (with the
/// default addresses), so the two cannot drift apart.
#[test]
fn the_readme_shows_the_commands_the_demo_prints() {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let section = readme
        .split("### What the demo does")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("```").next())
        .unwrap_or_default();
    let readme_commands: Vec<String> = section
        .replace("\\\n", " ")
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| l.starts_with("curl "))
        .collect();
    let demo = Demo::start();
    let (base, admin) = (demo.base.clone(), demo.admin.clone());
    let printed: Vec<String> = (1..=5)
        .flat_map(|n| demo.step_commands(n))
        .chain(
            demo.log()
                .lines()
                .filter_map(|l| l.strip_prefix("Metrics: "))
                .map(str::to_string),
        )
        .map(|l| {
            l.replace(&base, "http://127.0.0.1:8080")
                .replace(&admin, "http://127.0.0.1:9090")
        })
        .collect();
    assert_eq!(readme_commands, printed);
}
