//! `gatehouse demo` as a user runs it: the real binary on free ports, its printed
//! walkthrough captured, killed on drop so a failed assertion does not leave it running.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PAGE_LINE: &str = "Open the demo page in a browser: ";
const RUNNING_LINE: &str = "gatehouse demo is running: proxy ";
/// The walkthrough's last line: once it is printed, the whole walkthrough is.
const LAST_LINE: &str = "Stop with Ctrl-C.";

pub struct Demo {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    /// `http://127.0.0.1:PORT/demo`
    pub page: String,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin: String,
    /// `http://127.0.0.1:PORT` of the proxy.
    pub base: String,
}

impl Demo {
    pub fn start() -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        // Both streams are read until the process ends: a full pipe would stall its logging.
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line.clone());
                    output.lock().unwrap().push(line);
                }
            });
        }
        drop(tx);
        let mut demo = Demo {
            child,
            output,
            page: String::new(),
            admin: String::new(),
            base: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => panic!(
                    "gatehouse demo did not print its walkthrough ({e:?}); it printed:\n{}",
                    demo.log()
                ),
            };
            if let Some(rest) = line.split_once(RUNNING_LINE).map(|(_, r)| r) {
                // "proxy http://A, admin http://B."
                if let Some((base, admin)) = rest.split_once(", admin ") {
                    demo.base = base.trim().to_string();
                    demo.admin = admin.trim().trim_end_matches('.').to_string();
                }
            }
            if let Some((_, url)) = line.split_once(PAGE_LINE) {
                demo.page = url.trim().to_string();
            }
            if line.trim() == LAST_LINE {
                break;
            }
        }
        assert!(
            demo.page.starts_with("http://127.0.0.1:") && demo.page.ends_with("/demo"),
            "unexpected demo page URL {:?}",
            demo.page
        );
        assert!(
            demo.admin.starts_with("http://127.0.0.1:")
                && demo.base.starts_with("http://127.0.0.1:"),
            "no proxy or admin address in the walkthrough:\n{}",
            demo.log()
        );
        demo
    }

    /// Everything the demo printed so far, stdout and stderr.
    pub fn log(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// The value of a `NAME=value` line of the walkthrough (`TOKEN`, `ADMIN_TOKEN`).
    pub fn printed(&self, name: &str) -> String {
        let prefix = format!("{name}=");
        self.output
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.trim().strip_prefix(&prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("the walkthrough prints no {name}=:\n{}", self.log()))
    }

    /// The walkthrough's command lines of step `n` (the indented lines after `n. `, up to
    /// the next blank line) that start with `curl`.
    pub fn step_commands(&self, n: u32) -> Vec<String> {
        let heading = format!("{n}. ");
        let output = self.output.lock().unwrap();
        let Some(start) = output.iter().position(|l| l.starts_with(&heading)) else {
            panic!("the walkthrough has no step {n}:\n{}", output.join("\n"));
        };
        output[start + 1..]
            .iter()
            .take_while(|l| !l.trim().is_empty())
            .map(|l| l.trim())
            .filter(|l| l.starts_with("curl "))
            .map(str::to_string)
            .collect()
    }

    /// One sample of the admin listener's `/metrics`, by its full name and labels.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let addr = self.admin.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
