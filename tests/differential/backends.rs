//! The real, unmodified backends of tests/differential.rs, each a small script under
//! `tests/differential/` that only reports what its framework resolved. Each listens on one
//! port per gatehouse route, so the port that answers tells which route gatehouse applied.

#![allow(unreachable_pub)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A backend kind: how to start it and what it needs installed.
pub struct Kind {
    pub name: &'static str,
    program: &'static str,
    args: &'static [&'static str],
    /// Commands that must run (`<cmd> --version`-style probes) and the Debian package of each.
    needs: &'static [(&'static str, &'static str, &'static str)],
}

pub const PYTHON_HTTP_SERVER: Kind = Kind {
    name: "python-http.server",
    program: "python3",
    args: &["http_server.py"],
    needs: &[("python3", "--version", "python3")],
};

pub const PYTHON_WSGIREF: Kind = Kind {
    name: "python-wsgiref",
    program: "python3",
    args: &["wsgi_app.py"],
    needs: &[("python3", "--version", "python3")],
};

pub const NODE_HTTP: Kind = Kind {
    name: "node-http",
    program: "node",
    args: &["node_http.js"],
    needs: &[("node", "--version", "nodejs")],
};

pub const JAVA_HTTPSERVER: Kind = Kind {
    name: "java-httpserver",
    program: "java",
    args: &["Backend.java"],
    // A single-file source program needs the compiler module, which only the JDK ships.
    needs: &[
        ("java", "-version", "openjdk-17-jdk-headless"),
        ("javac", "-version", "openjdk-17-jdk-headless"),
    ],
};

pub const RACK_WEBRICK: Kind = Kind {
    name: "rack-webrick",
    program: "ruby",
    args: &["rack_app.rb"],
    needs: &[
        ("ruby", "--version", "ruby"),
        ("ruby", "-erequire 'rack'", "ruby-rack"),
        ("ruby", "-erequire 'webrick'", "ruby-webrick"),
    ],
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/differential")
}

impl Kind {
    /// Whether every command it needs runs; `None` when all do, else what is missing.
    pub fn missing(&self) -> Option<String> {
        self.needs.iter().find_map(|(cmd, probe, package)| {
            let runs = Command::new(cmd)
                .arg(probe)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            (!runs).then(|| format!("{cmd} (Debian package {package})"))
        })
    }
}

/// A running backend, killed when dropped (also when the test panics). Its stdin stays open
/// while this lives; the script exits by itself when it closes, should this process die.
pub struct Backend {
    child: Child,
    /// One port per route, in the order the routes were given.
    pub ports: Vec<u16>,
}

impl Backend {
    /// Starts `kind` with one listener per route path; waits for its `LISTENING` line.
    pub fn start(kind: &Kind, routes: &[&str]) -> Backend {
        let mut child = Command::new(kind.program)
            .args(kind.args)
            .arg(routes.len().to_string())
            .args(routes)
            .current_dir(dir())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", kind.program));
        let stdout = child.stdout.take().unwrap();
        // From here on a panic drops the guard, which kills the backend.
        let mut backend = Backend {
            child,
            ports: Vec::new(),
        };
        // The JDK compiles the source first; on a busy two-core machine that takes a while.
        let line = crate::support::first_line(stdout, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{} did not print LISTENING within 60s", kind.name));
        backend.ports = line
            .trim()
            .strip_prefix("LISTENING ")
            .map(|ports| ports.split(' ').filter_map(|p| p.parse().ok()).collect())
            .unwrap_or_default();
        assert_eq!(
            backend.ports.len(),
            routes.len(),
            "{} printed {line:?}, not LISTENING and one port per route",
            kind.name
        );
        backend
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
