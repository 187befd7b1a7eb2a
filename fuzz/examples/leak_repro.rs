//! End-to-end reproduction of the token_extract findings (fuzz/README.md, "Findings"):
//! a real in-process gatehouse in front of a raw TCP upstream that prints the request head
//! it receives. Each request carries a valid HS256 token where the route looks for one;
//! the upstream should never see it.
//!
//!     cd fuzz && cargo run --example leak_repro

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const SECRET: &str = "gatehouse-fuzz-hmac-secret-0123456789abcdef";

fn token() -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD
        .encode(br#"{"iss":"https://hs.fuzz/","aud":"api","sub":"alice","exp":4102444800}"#);
    let input = format!("{header}.{claims}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::main]
async fn main() {
    let upstream = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let upstream_addr = upstream.local_addr().expect("addr");
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = upstream.accept().await else {
                return;
            };
            let tx = seen_tx.clone();
            tokio::spawn(async move {
                let head = read_head(&mut s).await;
                let _ = tx.send(head);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });

    let toml = format!(
        r#"
[listen]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[[issuer]]
name = "hs"
issuer = "https://hs.fuzz/"
audiences = ["api"]
hmac_secret_env = "HS"
[[route]]
path = "/cookies"
upstream = "http://{upstream_addr}"
tokens = ["cookie:session_token", "cookie:legacy_token"]
[[route]]
path = "/ws"
upstream = "http://{upstream_addr}"
websocket = true
tokens = ["subprotocol", "header"]
[[route]]
path = "/plus"
upstream = "http://{upstream_addr}"
tokens = ["query:a+b", "query:x%5Fy"]
"#
    );
    let raw = gatehouse::config::load_str(&toml).expect("load");
    let secrets = |name: &str| (name == "HS").then(|| SECRET.to_string());
    let config = gatehouse::config::validate::validate(&raw, &secrets).expect("validate");
    let running = gatehouse::Gatehouse::start(config).await.expect("start");
    let proxy = running.addr();
    let t = token();

    let cases = [
        ("F2: token in the route's second cookie source",
         format!("GET /cookies/x HTTP/1.1\r\nHost: gw\r\nCookie: theme=dark; legacy_token={t}\r\nConnection: close\r\n\r\n")),
        ("F3: subprotocol token on a plain (non-upgrade) request",
         format!("GET /ws/hub HTTP/1.1\r\nHost: gw\r\nSec-WebSocket-Protocol: chat, bearer.{t}\r\nConnection: close\r\n\r\n")),
        ("F3 control: the same on a real upgrade (bearer.* removed)",
         format!("GET /ws/hub HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat, bearer.{t}\r\n\r\n")),
        ("F1: query:a+b",
         format!("GET /plus?a+b={t}&keep=1 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")),
        ("F1: query:x%5Fy",
         format!("GET /plus?x%5Fy={t}&keep=1 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")),
    ];
    let mut leaks = 0;
    for (name, request) in cases {
        let mut s = TcpStream::connect(proxy).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("send");
        let response = tokio::time::timeout(Duration::from_secs(5), read_head(&mut s))
            .await
            .unwrap_or_default();
        let status = response
            .lines()
            .next()
            .unwrap_or("(no response)")
            .to_string();
        let received = tokio::time::timeout(Duration::from_secs(2), seen.recv())
            .await
            .ok()
            .flatten();
        let leaked = received.as_deref().is_some_and(|h| h.contains(&t));
        leaks += usize::from(leaked && !name.contains("control"));
        println!(
            "== {name}\nproxy answered: {status}\nupstream received{}:\n{}",
            if leaked { " THE TOKEN" } else { "" },
            received
                .as_deref()
                .unwrap_or("(nothing)\n")
                .replace(&t, "<TOKEN>")
        );
    }
    println!("{leaks} case(s) forwarded the token upstream");
    running.shutdown().await;
}
