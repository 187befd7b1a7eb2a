//! The real-browser harness: Debian's Chromium driven by playwright-core from a script in
//! `tests/browser/`, run as a bounded child process. `tests/browser.rs` (the demo page) and
//! `tests/cors.rs` (a cross-origin SignalR page) use it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";

pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

pub fn node_works() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `cmd` to completion, killing it after `timeout`; panics if it cannot start.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> (Output, bool) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let drain = |stream: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    (output, timed_out)
}

pub fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// True when the browser test can run. Tests never install anything (`.ci/setup` does, once,
/// before the suite): outside CI a missing component is a skip with the reason on stderr;
/// under `CI=true` it is a failure.
pub fn prerequisites() -> bool {
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    let missing = [
        (!Path::new(CHROMIUM).exists()).then_some("Debian's chromium (/usr/bin/chromium)"),
        (!node_works()).then_some("Node.js (`node`)"),
        (!playwright.exists()).then_some("playwright-core (npm ci in tests/browser)"),
    ];
    let missing: Vec<&str> = missing.into_iter().flatten().collect();
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(", ");
    assert!(
        !in_ci(),
        "CI=true and the browser test is missing {what}: `bash .ci/setup` installs it"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED browser test: missing {what}; `bash .ci/setup` installs it"
    );
    false
}
