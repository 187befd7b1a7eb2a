//! The binary: the real `gatehouse run` process with its output collected.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The real `gatehouse run` binary, its stdout and stderr collected line by line.
pub struct Proc {
    child: std::process::Child,
    /// The admin listener's address.
    pub admin: String,
    output: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `gatehouse run --config <config>` at debug level; returns it and its public address.
    pub fn start(config: &std::path::Path) -> (Proc, String) {
        Self::start_wrapped(config, &[])
    }

    /// [`Proc::start`] through a wrapper command that execs it (`prlimit … --`).
    pub fn start_wrapped(config: &std::path::Path, wrapper: &[&str]) -> (Proc, String) {
        let binary = env!("CARGO_BIN_EXE_gatehouse");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = std::process::Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => std::process::Command::new(binary),
        };
        let mut child = command
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "debug")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            let addr_tx = addr_tx.clone();
            std::thread::spawn(move || {
                for line in
                    std::io::BufRead::lines(std::io::BufReader::new(stream)).map_while(Result::ok)
                {
                    if line.contains("gatehouse listening") {
                        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                        let addrs = (v["addr"].as_str(), v["admin_addr"].as_str());
                        let _ = addr_tx
                            .send((addrs.0.unwrap().to_string(), addrs.1.unwrap().to_string()));
                    }
                    output.lock().unwrap().push(line);
                }
            });
        }
        let (addr, admin) = addr_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("gatehouse did not start");
        (
            Proc {
                child,
                output,
                admin,
            },
            addr,
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (like "HUP") to the process.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// SIGTERM, then waits: the exit code and everything printed.
    pub fn terminate(self) -> (i32, String) {
        self.signal("TERM");
        self.wait()
    }

    /// Waits for the process to exit: the exit code and everything printed.
    pub fn wait(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        (
            status.code().unwrap_or(-1),
            self.output.lock().unwrap().join("\n"),
        )
    }
}

/// A test that ends without `terminate` (an early return, a failed assertion) must not
/// leave its gatehouse running: each would hold ports and a worker pool after the suite.
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `[listen]` and `[admin]` tables of a binary's config: both on free loopback ports
/// (the admin table may go on with more keys).
pub const LOOPBACK_LISTENERS: &str =
    "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"";
