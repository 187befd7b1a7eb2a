//! A real HAProxy in front of gatehouse, and clients that connect from a chosen loopback
//! address (Linux routes all of 127.0.0.0/8 to `lo`), so "the client" and "the proxy" are
//! different addresses on one machine.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// `haproxy -db` with one frontend on a free loopback port and one backend server,
/// stopped on drop.
pub struct Haproxy {
    pub addr: SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// `mode` is `tcp` or `http`; `frontend` and `server` are extra lines for the frontend
    /// and the `server` line (`send-proxy`, ...). HAProxy connects to `backend` from
    /// 127.0.0.1. `None` (after printing why) when haproxy is not installed outside CI.
    pub async fn start(
        mode: &str,
        frontend: &str,
        server: &str,
        backend: SocketAddr,
    ) -> Option<Self> {
        if !super::ensure_installed("haproxy", "haproxy") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "global\n  maxconn 200\ndefaults\n  mode {mode}\n  timeout connect 5s\n  \
                 timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind 127.0.0.1:{port}\n\
                 {frontend}\n  default_backend be\nbackend be\n  \
                 server gh {backend} source 127.0.0.1 {server}\n"
            ),
        )
        .unwrap();
        let child = std::process::Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let up = super::eventually(Duration::from_secs(10), || async move {
            TcpStream::connect(addr).await.is_ok()
        })
        .await;
        assert!(up, "haproxy did not start listening");
        Some(Self {
            addr,
            child,
            _dir: dir,
        })
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP connection to `to` from the loopback address `from` (e.g. "127.0.0.2").
pub async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// One answer read off a raw connection: status and body.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub body: String,
}

/// Sends `GET {path}` with extra header lines (each ending in `\r\n`) and reads one
/// response with a `Content-Length` body; the connection stays usable (keep-alive).
pub async fn request(socket: &mut TcpStream, path: &str, headers: &str) -> Option<RawAnswer> {
    let head = format!("GET {path} HTTP/1.1\r\nHost: app.example\r\n{headers}\r\n");
    socket.write_all(head.as_bytes()).await.ok()?;
    read_answer(socket).await
}

/// Reads one response (head and `Content-Length` body), or `None` when the connection
/// closed first or nothing came within 10 s.
pub async fn read_answer(socket: &mut TcpStream) -> Option<RawAnswer> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |n| n.trim().parse().unwrap());
                if buf.len() >= end + 4 + len {
                    let status = head.split(' ').nth(1)?.parse().ok()?;
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                    return Some(RawAnswer { status, body });
                }
            }
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()
        .flatten()
}
