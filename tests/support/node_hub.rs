//! The SignalR hub written on Node's `http` + `ws` (`tests/signalr/hub.js`), and the check
//! that `node` and the pinned npm packages of `tests/signalr` are there.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use serde_json::Value;

use super::{get, require_component};

/// `tests/signalr`: the hub, the Node client and their `node_modules`.
pub fn signalr_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/signalr")
}

/// The dependencies `tests/signalr/package.json` pins, name -> exact version.
pub fn pinned() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(signalr_dir().join("package.json")).unwrap();
    let package: Value = serde_json::from_str(&text).unwrap();
    package["dependencies"].as_object().unwrap().clone()
}

/// Whether every pinned dependency is installed at its pinned version.
fn deps_installed() -> bool {
    pinned().iter().all(|(name, version)| {
        let manifest = signalr_dir()
            .join("node_modules")
            .join(name)
            .join("package.json");
        std::fs::read_to_string(manifest)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .is_some_and(|installed| &installed["version"] == version)
    })
}

/// `Ok` when `node` runs and `npm ci` (run by `.ci/setup`) installed the pinned packages;
/// `Err` with what is missing otherwise. Tests only look; they never install.
fn node_ready() -> &'static Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY.get_or_init(|| {
        match Command::new("node").arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => return Err(format!("`node --version` failed ({})", out.status)),
            Err(e) => return Err(format!("node ({e})")),
        }
        if !deps_installed() {
            return Err("the npm packages of tests/signalr (npm ci)".to_string());
        }
        Ok(())
    })
}

/// True when a test that needs the Node hub or client can run; false (with a note) when it
/// must be skipped. Under `CI=true` a missing component is a failure, not a skip.
pub fn require_node(test: &str) -> bool {
    match node_ready() {
        Ok(()) => true,
        Err(what) => require_component(false, &format!("{test}: {what}")),
    }
}

/// The first line a child prints on `stdout`, or `None` if none comes within `within`.
/// Read on a thread of its own, so a child that never prints cannot hang the test.
pub fn first_line(stdout: ChildStdout, within: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(within).ok()
}

/// `node hub.js [args]` with `env`, killed when dropped (also when the test panics). Its
/// stdin stays open while this lives; the hub exits by itself when it closes, should the
/// test process die.
pub struct NodeHub {
    child: Child,
    port: u16,
}

impl NodeHub {
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> NodeHub {
        let mut child = Command::new("node")
            .arg("hub.js")
            .args(args)
            .envs(env.iter().copied())
            .current_dir(signalr_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node hub.js");
        let stdout = child.stdout.take().unwrap();
        // From here on a panic drops the guard, which kills the hub.
        let mut hub = NodeHub { child, port: 0 };
        let line = first_line(stdout, Duration::from_secs(10))
            .expect("hub.js did not print LISTENING within 10s");
        hub.port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("hub.js printed {line:?}, not LISTENING <port>"));
        hub
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the hub recorded: `{"requests": [...], "invocations": [...]}`.
    pub async fn seen(&self) -> Value {
        let answer = get(&format!("{}/__seen", self.url()), &[]).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()
    }
}

impl Drop for NodeHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
