//! Hostile WebSocket clients and upstreams (issue 17), each on loopback against the real
//! proxy: memory held before authentication (per connection and across connections), relay
//! clocks that keep running while one peer stops reading (tiny receive buffers, so the
//! proxy's send really blocks), an upstream choosing a subprotocol nobody offered, a client
//! forging gatehouse's close codes, and a ticket body that never finishes arriving.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{
    Request as WsRequest, Response as WsResponse,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

const ADMIN: &str = "admin-secret-for-hostile-tests";

/// `/fm` authenticates from the first message; `/ws` from the header.
async fn proxy(upstream: &str, limits: &str) -> TestProxy {
    let toml = format!(
        r#"
[admin]
addr = "127.0.0.1:0"
token_env = "ADMIN"

{HS_ISSUER}
leeway = "0s"

[tickets]
rate_limit_per_minute = 1000

[limits]
{limits}

[[route]]
path = "/fm"
upstream = "{upstream}"
websocket = true
tokens = ["first-message"]
first_message_timeout = "5s"

[[route]]
path = "/ws"
upstream = "{upstream}"
websocket = true
"#
    );
    TestProxy::start_with_secrets(&toml, &[("HS", SECRET), ("ADMIN", ADMIN)]).await
}

// === Raw WebSocket bytes ===

const UPGRADE: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// The head of the answer to a request head sent on a new connection.
async fn answer_to(addr: std::net::SocketAddr, head: &str) -> String {
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(head.as_bytes()).await.unwrap();
    read_head(&mut client).await
}

/// Reads an HTTP head byte by byte, so no frame after it is consumed.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let read = async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                break;
            }
            head.push(byte[0]);
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    String::from_utf8_lossy(&head).into_owned()
}

async fn raw_upgrade(addr: SocketAddr, path: &str, headers: &str) -> (TcpStream, String) {
    raw_upgrade_from("127.0.0.1", addr, path, headers).await
}

/// [`raw_upgrade`] from another loopback address: another client, as gatehouse counts them.
async fn raw_upgrade_from(
    from: &str,
    addr: SocketAddr,
    path: &str,
    headers: &str,
) -> (TcpStream, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: gatehouse\r\n{UPGRADE}{headers}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    (stream, head)
}

/// A masked client frame header (mask 0, so the payload goes as is).
fn frame_header(first_byte: u8, len: u64) -> Vec<u8> {
    let mut h = vec![first_byte];
    match len {
        0..=125 => h.push(0x80 | len as u8),
        126..=65535 => {
            h.push(0x80 | 126);
            h.extend((len as u16).to_be_bytes());
        }
        _ => {
            h.push(0x80 | 127);
            h.extend(len.to_be_bytes());
        }
    }
    h.extend([0, 0, 0, 0]);
    h
}

/// An unfinished text fragment announcing `declared` bytes, of which `sent` are sent.
fn unfinished_fragment(declared: u64, sent: usize) -> Vec<u8> {
    let mut bytes = frame_header(0x01, declared);
    bytes.extend(std::iter::repeat_n(b'a', sent));
    bytes
}

/// The code of the next close frame from the server, skipping other frames.
async fn raw_close_code(stream: &mut TcpStream, within: Duration) -> Option<u16> {
    let read = async {
        loop {
            let mut h = [0u8; 2];
            stream.read_exact(&mut h).await.ok()?;
            let len = match h[1] & 0x7f {
                126 => u64::from(stream.read_u16().await.ok()?),
                127 => stream.read_u64().await.ok()?,
                n => u64::from(n),
            };
            let mut payload = vec![0u8; len as usize];
            stream.read_exact(&mut payload).await.ok()?;
            if h[0] & 0x0f == 8 {
                return Some(u16::from_be_bytes([*payload.first()?, *payload.get(1)?]));
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim();
    kb.parse::<u64>().unwrap() * 1024
}

// === Upstreams that misbehave ===

/// How a test upstream behaves once the handshake is done.
#[derive(Clone, Copy)]
enum Peer {
    /// Sends binary messages as fast as it can and reports the close it receives.
    Floods,
    /// Never reads again (and its socket has a tiny receive buffer).
    Deaf,
}

struct HostileHub {
    addr: SocketAddr,
    /// The close each connection received (`None`: it ended without one).
    closes: mpsc::UnboundedReceiver<Option<(u16, String)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostileHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileHub {
    async fn start(peer: Peer, subprotocol: Option<&'static str>) -> HostileHub {
        let socket = TcpSocket::new_v4().unwrap();
        // Inherited by accepted sockets: a deaf upstream's window closes after a few KiB.
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(64).unwrap();
        let addr = listener.local_addr().unwrap();
        let (report, closes) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                let callback = move |_: &WsRequest, mut resp: WsResponse| {
                    if let Some(p) = subprotocol {
                        resp.headers_mut()
                            .insert("sec-websocket-protocol", p.parse().unwrap());
                    }
                    Ok(resp)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    continue;
                };
                match peer {
                    Peer::Deaf => held.push(ws),
                    Peer::Floods => {
                        tokio::spawn(flood(ws, report.clone()));
                    }
                }
            }
        });
        HostileHub { addr, closes, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn next_close(&mut self, within: Duration) -> Option<(u16, String)> {
        tokio::time::timeout(within, self.closes.recv())
            .await
            .ok()
            .flatten()
            .flatten()
    }
}

async fn flood(
    ws: tokio_tungstenite::WebSocketStream<TcpStream>,
    report: mpsc::UnboundedSender<Option<(u16, String)>>,
) {
    let (mut tx, mut rx) = ws.split();
    let sender = tokio::spawn(async move {
        let chunk = vec![7u8; 16 * 1024];
        while tx.send(Message::binary(chunk.clone())).await.is_ok() {}
    });
    let mut close = None;
    while let Some(Ok(message)) = rx.next().await {
        if let Message::Close(frame) = message {
            close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            break;
        }
    }
    sender.abort();
    let _ = report.send(close);
}

/// A client whose socket has a tiny receive buffer: once it stops reading, the proxy's
/// sends to it block after a few KiB.
async fn slow_reader(addr: SocketAddr, path: &str, bearer: &str) -> WsClient {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    ws
}

async fn revoke_jti(proxy: &TestProxy, jti: &str) {
    assert_eq!(proxy.revoke(ADMIN, json!({ "jti": jti })).await, 204);
}

// === Before authentication ===

#[tokio::test]
async fn an_unfinished_megabyte_first_fragment_is_refused_at_its_header() {
    let hub = WsHub::start().await;
    let proxy = proxy(&hub.url(), "").await;
    let (mut s, head) = raw_upgrade(proxy.addr, "/fm", "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(&unfinished_fragment(1_000_000, 1024))
        .await
        .unwrap();
    // Long before first_message_timeout (5 s): the header alone is over the budget.
    assert_eq!(
        raw_close_code(&mut s, Duration::from_secs(3)).await,
        Some(1009)
    );
    assert_eq!(
        proxy
            .metric("gatehouse_limit_hits_total{limit=\"pre_auth_bytes\"}")
            .await,
        1.0
    );
    assert!(hub.conns().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_unauthenticated_megabyte_fragments_leave_memory_bounded() {
    let hub = WsHub::start().await;
    let proxy = proxy(&hub.url(), "").await;
    let attack = Arc::new(unfinished_fragment(1_000_000, 999_000));
    let before = rss_bytes();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (addr, attack) = (proxy.addr, attack.clone());
        tasks.push(tokio::spawn(async move {
            let (mut s, head) = raw_upgrade(addr, "/fm", "").await;
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            // The proxy may cut us mid-write: that is the point.
            let _ = tokio::time::timeout(Duration::from_secs(15), s.write_all(&attack)).await;
            s
        }));
    }
    let mut held = Vec::new();
    for task in tasks {
        held.push(task.await.unwrap());
    }
    // Every connection is still inside its first_message_timeout (5 s) for this window, in
    // which the proxy has had time to take in whatever it was going to buffer.
    let mut grown = 0;
    for _ in 0..20 {
        grown = grown.max(rss_bytes().saturating_sub(before));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("RSS grew by {} KiB at most", grown >> 10);
    assert!(
        grown < 40 << 20,
        "100 unauthenticated connections grew RSS by {} MiB",
        grown >> 20
    );
    assert!(
        proxy
            .metric("gatehouse_limit_hits_total{limit=\"pre_auth_bytes\"}")
            .await
            >= 100.0
    );
    drop(held);
}

#[tokio::test]
async fn the_global_pre_auth_budget_refuses_with_1013_and_is_given_back() {
    let hub = WsHub::start().await;
    let proxy = proxy(&hub.url(), "pre_auth_total_bytes = 65536").await;
    // Each announces 12 000 bytes (+ an 8-byte header): five fit in 64 KiB, three do not.
    // From eight client addresses, so no one address reaches its own share first.
    let mut conns = Vec::new();
    for i in 0..8 {
        let from = format!("127.0.0.{}", i + 2);
        let (mut s, head) = raw_upgrade_from(&from, proxy.addr, "/fm", "").await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        s.write_all(&unfinished_fragment(12_000, 100))
            .await
            .unwrap();
        conns.push(s);
    }
    let codes = futures_util::future::join_all(
        conns
            .iter_mut()
            .map(|s| raw_close_code(s, Duration::from_millis(1500))),
    )
    .await;
    let refused = codes.iter().filter(|c| **c == Some(1013)).count();
    assert_eq!(refused, 3, "{codes:?}");
    assert!(
        codes.iter().all(|c| matches!(c, None | Some(1013))),
        "{codes:?}"
    );
    assert_eq!(
        proxy
            .metric("gatehouse_limit_hits_total{limit=\"pre_auth_total_bytes\"}")
            .await,
        3.0
    );
    // Their budget comes back when they go: a real auth message passes again.
    drop(conns);
    let passed = eventually(Duration::from_secs(5), || async {
        let (mut c, _) = ws_connect(&format!("ws://{}/fm", proxy.addr), &[])
            .await
            .unwrap();
        let auth = json!({"type": "auth", "token": token_until("alice", 600, "j1")});
        c.send(Message::text(auth.to_string())).await.unwrap();
        c.send(Message::text("hi")).await.unwrap();
        matches!(next_message(&mut c).await, Some(Message::Text(t)) if t.as_str() == "hi")
    })
    .await;
    assert!(passed, "the pre-auth budget was never given back");
}

/// One client address holds at most a sixteenth of the budget (here `pre_auth_bytes`, the
/// larger): its second connection announcing a large frame gets `1013`, while another
/// address, and a real auth message, still get in.
#[tokio::test]
async fn one_client_address_cannot_spend_the_pre_auth_budget_of_everyone() {
    let hub = WsHub::start().await;
    let proxy = proxy(&hub.url(), "pre_auth_total_bytes = 160000").await;
    let mut first = raw_upgrade_from("127.0.0.9", proxy.addr, "/fm", "").await.0;
    first
        .write_all(&unfinished_fragment(12_000, 100))
        .await
        .unwrap();
    let mut second = raw_upgrade_from("127.0.0.9", proxy.addr, "/fm", "").await.0;
    second
        .write_all(&unfinished_fragment(12_000, 100))
        .await
        .unwrap();
    assert_eq!(
        raw_close_code(&mut second, Duration::from_millis(1500)).await,
        Some(1013)
    );
    assert_eq!(
        proxy
            .metric("gatehouse_limit_hits_total{limit=\"pre_auth_client_bytes\"}")
            .await,
        1.0
    );
    let mut other = raw_upgrade_from("127.0.0.10", proxy.addr, "/fm", "")
        .await
        .0;
    other
        .write_all(&unfinished_fragment(12_000, 100))
        .await
        .unwrap();
    assert_eq!(
        raw_close_code(&mut other, Duration::from_millis(500)).await,
        None
    );
    // A real caller from a third address authenticates while both are held.
    let (mut c, _) = ws_connect(&format!("ws://{}/fm", proxy.addr), &[])
        .await
        .unwrap();
    let auth = json!({"type": "auth", "token": token_until("alice", 600, "j9")});
    c.send(Message::text(auth.to_string())).await.unwrap();
    c.send(Message::text("hi")).await.unwrap();
    assert!(matches!(next_message(&mut c).await, Some(Message::Text(t)) if t.as_str() == "hi"));
    drop((first, other));
}

#[tokio::test]
async fn a_ticket_body_that_never_finishes_is_cut_after_its_timeout() {
    let hub = WsHub::start().await;
    let proxy = proxy(&hub.url(), "body_read_timeout = \"500ms\"").await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST /.gatehouse/ticket HTTP/1.1\r\nHost: gatehouse\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{{\"route\":",
        token_until("alice", 600, "j2")
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = read_head(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert_eq!(
        proxy
            .metric("gatehouse_limit_hits_total{limit=\"body_read_timeout\"}")
            .await,
        1.0
    );
}

/// A ticket request announcing a body over the endpoint's 4 KiB is refused on its head:
/// the answer comes while the body has not been sent at all, not after `body_read_timeout`.
#[tokio::test]
async fn a_ticket_request_announcing_a_large_body_gets_413_before_sending_it() {
    let hub = WsHub::start().await;
    let proxy = proxy(&hub.url(), "").await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST /.gatehouse/ticket HTTP/1.1\r\nHost: gatehouse\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n",
        token_until("alice", 600, "j2b")
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(2), read_head(&mut s))
        .await
        .expect("no answer to the head alone within 2 s");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    // A chunked body is judged as it arrives, and refused the same way where it crosses.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST /.gatehouse/ticket HTTP/1.1\r\nHost: gatehouse\r\nAuthorization: Bearer {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n1388\r\n{}\r\n",
        token_until("alice", 600, "j2c"),
        "x".repeat(5000)
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(2), read_head(&mut s))
        .await
        .expect("no answer within 2 s");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
}

/// The admin listener's `POST /revocations` reads its body on the same clock: a body that
/// trickles in (the caller has the admin secret, but may be a stuck script) is cut.
#[tokio::test]
async fn an_admin_body_that_never_finishes_is_cut_after_its_timeout() {
    let hub = WsHub::start().await;
    let proxy = proxy(&hub.url(), "body_read_timeout = \"500ms\"").await;
    let mut s = TcpStream::connect(proxy.admin).await.unwrap();
    let head = format!(
        "POST /revocations HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{{\"jti\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = read_head(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
}

// === Clocks that keep running while a peer does not read ===

#[tokio::test]
async fn a_client_that_stops_reading_still_gets_4401_when_its_token_expires() {
    let mut hub = HostileHub::start(Peer::Floods, None).await;
    let proxy = proxy(&hub.url(), "").await;
    let mut client = slow_reader(proxy.addr, "/ws", &token_until("alice", 2, "j3")).await;
    // The upstream floods, the client reads nothing: the proxy's send to it blocks.
    assert_eq!(
        hub.next_close(Duration::from_secs(8)).await,
        Some((4401, "token expired".to_string())),
        "the upstream was not closed at expiry"
    );
    assert_eq!(
        close_of(&mut client, Duration::from_secs(5)).await,
        Some((4401, "token expired".to_string()))
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_still_gets_4401_when_its_token_is_revoked() {
    let mut hub = HostileHub::start(Peer::Floods, None).await;
    let proxy = proxy(&hub.url(), "").await;
    let mut client = slow_reader(proxy.addr, "/ws", &token_until("alice", 600, "j4")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    revoke_jti(&proxy, "j4").await;
    assert_eq!(
        hub.next_close(Duration::from_secs(5)).await,
        Some((4401, "token revoked".to_string())),
        "the upstream was not closed on revocation"
    );
    assert_eq!(
        close_of(&mut client, Duration::from_secs(5)).await,
        Some((4401, "token revoked".to_string()))
    );
}

#[tokio::test]
async fn an_upstream_that_stops_reading_does_not_hold_the_expiry_close() {
    let hub = HostileHub::start(Peer::Deaf, None).await;
    let proxy = proxy(&hub.url(), "").await;
    let bearer = format!("Bearer {}", token_until("alice", 2, "j5"));
    let (client, _) = ws_connect(
        &format!("ws://{}/ws", proxy.addr),
        &[("authorization", &bearer)],
    )
    .await
    .unwrap();
    let (mut tx, mut rx) = client.split();
    let flood = tokio::spawn(async move {
        let chunk = vec![7u8; 16 * 1024];
        while tx.send(Message::binary(chunk.clone())).await.is_ok() {}
    });
    let close = tokio::time::timeout(Duration::from_secs(8), async {
        while let Some(Ok(message)) = rx.next().await {
            if let Message::Close(frame) = message {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
        }
        None
    })
    .await;
    flood.abort();
    assert_eq!(
        close.ok().flatten(),
        Some((4401, "token expired".to_string()))
    );
}

// === What the upstream is told ===

#[tokio::test]
async fn an_upstream_subprotocol_the_client_never_offered_is_refused_with_502() {
    let hub = HostileHub::start(Peer::Floods, Some("evil.v1")).await;
    let proxy = proxy(&hub.url(), "").await;
    let headers = format!(
        "Authorization: Bearer {}\r\nSec-WebSocket-Protocol: chat.v1\r\n",
        token_until("alice", 600, "j6")
    );
    let (_s, head) = raw_upgrade(proxy.addr, "/ws", &headers).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(!head.contains("evil.v1"), "{head}");
    assert_eq!(
        proxy
            .metric("gatehouse_websocket_upgrades_total{result=\"bad_subprotocol\",route=\"/ws\"}")
            .await,
        1.0
    );
}

/// A first-message route answers the client's handshake before any upstream is asked, with
/// the first subprotocol the client offered. The upstream is offered exactly that one; one
/// that picks another, or none, gets the session ended (close 1011 saying why) rather than
/// relayed between two sides that speak different protocols.
#[tokio::test]
async fn a_first_message_route_holds_the_upstream_to_the_subprotocol_the_client_was_given() {
    let offer = [("sec-websocket-protocol", "chat.v2, chat.v1")];
    let auth =
        |jti: &str| json!({"type": "auth", "token": token_until("alice", 600, jti)}).to_string();
    // A hub that takes the first subprotocol offered: the session runs on chat.v2.
    let hub = WsHub::start().await;
    let gate = proxy(&hub.url(), "").await;
    let (mut c, answer) = ws_connect(&format!("ws://{}/fm", gate.addr), &offer)
        .await
        .unwrap();
    assert_eq!(answer.headers()["sec-websocket-protocol"], "chat.v2");
    c.send(Message::text(auth("s1"))).await.unwrap();
    c.send(Message::text("hi")).await.unwrap();
    assert!(matches!(next_message(&mut c).await, Some(Message::Text(t)) if t.as_str() == "hi"));
    assert_eq!(hub.conns()[0].headers["sec-websocket-protocol"], "chat.v2");

    // Upstreams that choose no subprotocol, or one nobody offered.
    for (chosen, jti) in [
        (None, "s2"),
        (Some("evil.v1"), "s3"),
        (Some("chat.v1"), "s4"),
    ] {
        let hub = HostileHub::start(Peer::Floods, chosen).await;
        let gate = proxy(&hub.url(), "").await;
        let (mut c, answer) = ws_connect(&format!("ws://{}/fm", gate.addr), &offer)
            .await
            .unwrap();
        assert_eq!(answer.headers()["sec-websocket-protocol"], "chat.v2");
        c.send(Message::text(auth(jti))).await.unwrap();
        assert_eq!(
            close_of(&mut c, Duration::from_secs(5)).await,
            Some((1011, "upstream refused the subprotocol".to_string())),
            "upstream chose {chosen:?}"
        );
        let refused =
            "gatehouse_websocket_upgrades_total{result=\"bad_subprotocol\",route=\"/fm\"}";
        assert_eq!(gate.metric(refused).await, 1.0, "upstream chose {chosen:?}");
    }

    // A client that offers none gets none, and so must the upstream choose.
    let hub = HostileHub::start(Peer::Floods, Some("evil.v1")).await;
    let gate = proxy(&hub.url(), "").await;
    let (mut c, answer) = ws_connect(&format!("ws://{}/fm", gate.addr), &[])
        .await
        .unwrap();
    assert!(answer.headers().get("sec-websocket-protocol").is_none());
    c.send(Message::text(auth("s5"))).await.unwrap();
    assert_eq!(
        close_of(&mut c, Duration::from_secs(5)).await,
        Some((1011, "upstream refused the subprotocol".to_string()))
    );
}

#[tokio::test]
async fn a_client_close_in_gatehouse_range_reaches_the_upstream_rewritten() {
    let hub = WsHub::start().await;
    let proxy = proxy(&hub.url(), "").await;
    let bearer = format!("Bearer {}", token_until("alice", 600, "j7"));
    for forged in [4401u16, 4403] {
        let (mut c, _) = ws_connect(
            &format!("ws://{}/ws", proxy.addr),
            &[("authorization", &bearer)],
        )
        .await
        .unwrap();
        c.close(Some(CloseFrame {
            code: CloseCode::from(forged),
            reason: "token expired".into(),
        }))
        .await
        .unwrap();
        let seen = eventually(Duration::from_secs(3), || async {
            hub.conns().last().is_some_and(|h| h.ended)
        })
        .await;
        assert!(seen, "the hub never saw the close");
        assert_eq!(hub.conns().last().unwrap().close_code, Some(4000));
    }
}

// === Frames go on as they were checked (the frame-boundary relay) ===

/// An upstream that answers the handshake by hand and then hands over its raw socket.
async fn raw_upstream() -> (String, mpsc::UnboundedReceiver<TcpStream>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let head = read_head(&mut stream).await;
            let answer = switching_protocols(&head);
            stream.write_all(answer.as_bytes()).await.unwrap();
            let _ = tx.send(stream);
        }
    });
    (url, rx)
}

/// The `101` an upstream answers to the handshake `head` (its key accepted).
fn switching_protocols(head: &str) -> String {
    let key = head
        .lines()
        .find_map(|l| l.strip_prefix("sec-websocket-key: "))
        .unwrap()
        .trim();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
}

/// Exactly `n` bytes, or what came before the stream ended or 5 s passed.
async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    let mut have = 0;
    let read = async {
        while have < n {
            match stream.read(&mut got[have..]).await {
                Ok(0) | Err(_) => break,
                Ok(k) => have += k,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    got.truncate(have);
    got
}

fn masked_frame(first_byte: u8, key: [u8; 4], payload: &[u8], long_form: bool) -> Vec<u8> {
    let mut f = vec![first_byte];
    if long_form {
        f.push(0x80 | 126);
        f.extend((payload.len() as u16).to_be_bytes());
    } else {
        f.push(0x80 | payload.len() as u8);
    }
    f.extend(key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

#[tokio::test]
async fn client_frames_reach_the_upstream_with_the_clients_own_mask_and_a_minimal_header() {
    let (url, mut upstreams) = raw_upstream().await;
    let proxy = proxy(&url, "").await;
    let auth = format!(
        "Authorization: Bearer {}\r\n",
        token_until("alice", 600, "j8")
    );
    let (mut client, head) = raw_upgrade(proxy.addr, "/ws", &auth).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut hub = upstreams.recv().await.unwrap();

    // "hello" with its length in the 16-bit form, then a message in two fragments with a
    // ping between them.
    let hello = masked_frame(0x81, [0x11, 0x22, 0x33, 0x44], b"hello", true);
    let part1 = masked_frame(0x01, [1, 2, 3, 4], b"frag", false);
    let ping = masked_frame(0x89, [5, 6, 7, 8], b"p", false);
    let part2 = masked_frame(0x80, [9, 9, 9, 9], b"ment", false);
    for f in [&hello, &part1, &ping, &part2] {
        client.write_all(f).await.unwrap();
    }
    let mut expected = masked_frame(0x81, [0x11, 0x22, 0x33, 0x44], b"hello", false);
    for f in [&part1, &ping, &part2] {
        expected.extend_from_slice(f);
    }
    assert_eq!(read_n(&mut hub, expected.len()).await, expected);
    // gatehouse answers the ping itself, unmasked, as a server does.
    assert_eq!(read_n(&mut client, 3).await, [0x8A, 1, b'p']);

    // The upstream's frames reach the client as they are.
    let down = [0x82, 3, 7, 8, 9];
    hub.write_all(&down).await.unwrap();
    assert_eq!(read_n(&mut client, down.len()).await, down);
}

#[tokio::test]
async fn a_length_with_its_top_bit_set_gets_1009_and_none_of_its_frame_goes_upstream() {
    let (url, mut upstreams) = raw_upstream().await;
    let proxy = proxy(&url, "").await;
    let auth = format!(
        "Authorization: Bearer {}\r\n",
        token_until("alice", 600, "j9")
    );
    let (mut client, _) = raw_upgrade(proxy.addr, "/ws", &auth).await;
    let mut hub = upstreams.recv().await.unwrap();
    // 2^63 + 4: a parser that drops the top bit (or reads the length as signed) would see
    // a short frame here and read the next bytes as a frame of the client's choosing.
    let mut sneaky = vec![0x82, 0x80 | 127];
    sneaky.extend((1u64 << 63 | 4).to_be_bytes());
    sneaky.extend([0, 0, 0, 0]);
    sneaky.extend(masked_frame(0x88, [0, 0, 0, 0], &[0x03, 0xE8], false));
    client.write_all(&sneaky).await.unwrap();
    assert_eq!(
        raw_close_code(&mut client, Duration::from_secs(5)).await,
        Some(1009)
    );
    // The upstream's first bytes are gatehouse's own close (masked, code 1009).
    let got = read_n(&mut hub, 8).await;
    assert_eq!(&got[..2], &[0x88, 0x80 | 17], "{got:?}");
    let code = [got[6] ^ got[2], got[7] ^ got[3]];
    assert_eq!(u16::from_be_bytes(code), 1009);
}

#[tokio::test]
async fn a_close_is_never_put_inside_a_frame_left_half_sent() {
    let (url, mut upstreams) = raw_upstream().await;
    let proxy = proxy(&url, "").await;
    let auth = format!(
        "Authorization: Bearer {}\r\n",
        token_until("alice", 2, "j10")
    );
    let (mut client, _) = raw_upgrade(proxy.addr, "/ws", &auth).await;
    let mut hub = upstreams.recv().await.unwrap();
    // The upstream announces 1000 bytes, sends 10 and stops; then the token expires.
    let mut half = vec![0x82, 126, 0x03, 0xE8];
    half.extend([7u8; 10]);
    hub.write_all(&half).await.unwrap();
    assert_eq!(read_n(&mut client, half.len()).await, half);
    // The upstream still gets its 4401 (nothing was half sent its way)...
    let got = read_n(&mut hub, 8).await;
    assert_eq!(got.first(), Some(&0x88), "{got:?}");
    assert_eq!(u16::from_be_bytes([got[6] ^ got[2], got[7] ^ got[3]]), 4401);
    // ...and the client is cut after the grace: a close inside the frame would be read
    // as payload, so it gets none.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(6), client.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the client was not cut");
    assert!(rest.is_empty(), "bytes after the half frame: {rest:?}");
}

/// Bytes sent with the handshake would reach the upstream ahead of the relayed stream,
/// where it could read them as frames the relay never checked (an unmasked frame, a close
/// in gatehouse's range). A handshake with a body is refused on both kinds of route, in
/// both framings, and the upstream never hears of it.
#[tokio::test]
async fn a_handshake_with_a_body_is_refused_and_never_reaches_the_upstream() {
    let (url, mut upstreams) = raw_upstream().await;
    let proxy = proxy(&url, "").await;
    let auth = format!(
        "Authorization: Bearer {}\r\n",
        token_until("alice", 600, "j12")
    );
    // An unmasked text frame, then a masked close 4401 "token expired".
    let mut frames = vec![0x81, 2, b'h', b'i'];
    frames.extend(masked_frame(
        0x88,
        [0, 0, 0, 0],
        b"\x11\x31token expired",
        false,
    ));
    let sized = format!("{auth}Content-Length: {}\r\n", frames.len());
    let chunked = format!("{auth}Transfer-Encoding: chunked\r\n");
    let mut chunk = format!("{:x}\r\n", frames.len()).into_bytes();
    chunk.extend(&frames);
    chunk.extend(b"\r\n0\r\n\r\n");
    for (path, headers, body) in [
        ("/ws", &sized, &frames),
        ("/ws", &chunked, &chunk),
        ("/fm", &sized, &frames),
    ] {
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        let head = format!("GET {path} HTTP/1.1\r\nHost: gatehouse\r\n{UPGRADE}{headers}\r\n");
        client.write_all(head.as_bytes()).await.unwrap();
        client.write_all(body).await.unwrap();
        let answer = read_head(&mut client).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{path} {headers}: {answer}"
        );
    }
    assert!(
        upstreams.try_recv().is_err(),
        "a handshake with a body reached the upstream"
    );
}

/// Pass 13: a missing, malformed or doubled `Sec-WebSocket-Key` is refused on both kinds
/// of route, before the upstream hears of it (a lenient upstream would answer `101`), and
/// gatehouse never answers such a handshake itself on a first-message route.
#[tokio::test]
async fn a_bad_websocket_key_is_refused_before_the_upstream() {
    let (url, mut upstreams) = raw_upstream().await;
    let proxy = proxy(&url, "").await;
    let auth = format!(
        "Authorization: Bearer {}\r\n",
        token_until("alice", 600, "j16")
    );
    let handshake = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
    let good = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    for key in [
        "",
        "Sec-WebSocket-Key: abc\r\n",
        "Sec-WebSocket-Key: !!!!notbase64!!!!xxxxxxx\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ==\r\n",
        &format!("{good}{good}"),
    ] {
        for (path, auth) in [("/ws", auth.as_str()), ("/fm", "")] {
            let head =
                format!("GET {path} HTTP/1.1\r\nHost: gatehouse\r\n{handshake}{key}{auth}\r\n");
            let answer = answer_to(proxy.addr, &head).await;
            assert!(
                answer.starts_with("HTTP/1.1 400"),
                "{path} {key:?}: {answer}"
            );
        }
    }
    assert!(
        upstreams.try_recv().is_err(),
        "a handshake with a bad key reached the upstream"
    );
    // The same handshake with a good key goes through.
    let (_client, head) = raw_upgrade(proxy.addr, "/ws", &auth).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

/// Pass 17: only RFC 6455's version 13 is relayed or answered; another version, none or
/// several get `426` naming 13 (RFC 6455 §4.2.2), on both kinds of route, before the
/// upstream hears of them.
#[tokio::test]
async fn another_websocket_version_gets_426_before_the_upstream() {
    let (url, mut upstreams) = raw_upstream().await;
    let proxy = proxy(&url, "").await;
    let auth = format!(
        "Authorization: Bearer {}\r\n",
        token_until("alice", 600, "j17")
    );
    let handshake = "Connection: Upgrade\r\nUpgrade: websocket\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    for version in [
        "",
        "Sec-WebSocket-Version: 8\r\n",
        "Sec-WebSocket-Version: 13, 8\r\n",
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n",
    ] {
        for (path, auth) in [("/ws", auth.as_str()), ("/fm", "")] {
            let head =
                format!("GET {path} HTTP/1.1\r\nHost: gatehouse\r\n{handshake}{version}{auth}\r\n");
            let answer = answer_to(proxy.addr, &head).await.to_ascii_lowercase();
            assert!(
                answer.starts_with("http/1.1 426"),
                "{path} {version:?}: {answer}"
            );
            assert!(answer.contains("sec-websocket-version: 13\r\n"), "{answer}");
        }
    }
    assert!(
        upstreams.try_recv().is_err(),
        "a handshake for another version reached the upstream"
    );
}

/// A revocation applied while the upstream is still connecting or answering `101` came
/// before the session listened for revocations; the session still ends with 4401 as soon
/// as it starts, not at the token's `exp`. The upstream here holds its `101` until the
/// revocation is in.
#[tokio::test]
async fn a_token_revoked_during_the_handshake_closes_the_session_as_it_starts() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (heard, mut heads) = mpsc::unbounded_channel();
    let (go, gate) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let head = read_head(&mut stream).await;
        let _ = heard.send(());
        let _ = gate.await;
        let answer = switching_protocols(&head);
        stream.write_all(answer.as_bytes()).await.unwrap();
        // Keeps the upstream side open for as long as the test runs.
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
    });
    let proxy = proxy(&url, "").await;
    let auth = format!(
        "Authorization: Bearer {}\r\n",
        token_until("alice", 600, "j13")
    );
    let addr = proxy.addr;
    let client = tokio::spawn(async move { raw_upgrade(addr, "/ws", &auth).await });
    // Authenticated and on its way upstream: now the token is revoked.
    heads.recv().await.unwrap();
    revoke_jti(&proxy, "j13").await;
    go.send(()).unwrap();
    let (mut client, head) = client.await.unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        raw_close_code(&mut client, Duration::from_secs(5)).await,
        Some(4401),
        "a session whose token was revoked before it started stayed open"
    );
}
