//! Hostile clients at the connection level: each test plays one attack with raw HTTP/2
//! frames or a raw socket on loopback, and asserts the bound gatehouse holds (a deadline,
//! a number of upstream connections), against a real upstream that counts its connections.
//!
//! - an HTTP/2 client that never acknowledges the closing PING is cut after
//!   `idle_timeout` + `close_grace` (cleartext and TLS);
//! - a flood of streams reset after acceptance gets GOAWAY and does not cost one upstream
//!   connection per stream;
//! - a client that stops reading (HTTP/1.1) or grants no window (HTTP/2) loses its response
//!   after `write_timeout`, and the upstream connection is released;
//! - a FIFO in place of the config file or the TLS key freezes neither reload nor SIGTERM.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

// === A counting upstream ===

/// An HTTP/1.1 backend that counts the TCP connections it accepted and still has open.
/// `/slow` answers after 300 ms; `/big` streams 64 KiB chunks without end.
struct Counting {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Counting {
    async fn start() -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (a, o, r) = (accepted.clone(), open.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let guard = OpenGuard(o.clone());
                let r = r.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        r.fetch_add(1, Ordering::SeqCst);
                        async move { Ok::<_, Infallible>(respond(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Counting {
            addr,
            accepted,
            open,
            requests,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Streamed = StreamBody<
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>>,
>;

/// `/consume` answers at once and reads the request body behind the answer (a streaming
/// endpoint); `/after-body` reads the whole body first; anything else is [`answer`]ed.
async fn respond(req: http::Request<hyper::body::Incoming>) -> Response<Streamed> {
    use http_body_util::BodyExt;
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/consume" => {
            tokio::spawn(req.into_body().collect());
        }
        "/after-body" => {
            let _ = req.into_body().collect().await;
        }
        _ => {}
    }
    answer(&path).await
}

async fn answer(path: &str) -> Response<Streamed> {
    use futures_util::StreamExt;
    let chunks: std::pin::Pin<Box<dyn futures_util::Stream<Item = _> + Send>> = match path {
        "/big" => Box::pin(
            futures_util::stream::repeat(Bytes::from(vec![b'x'; 65536]))
                .map(|b| Ok(Frame::data(b))),
        ),
        _ => {
            if path == "/slow" {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Box::pin(futures_util::stream::once(async {
                Ok(Frame::data(Bytes::from_static(b"ok")))
            }))
        }
    };
    Response::new(StreamBody::new(chunks))
}

fn config(upstream: &str, limits: &str) -> String {
    format!(
        r#"
[limits]
{limits}

[[route]]
path = "/"
upstream = "{upstream}"
auth = "none"
"#
    )
}

// === Raw HTTP/2 frames ===

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The client preface and a SETTINGS frame with `settings` (id, value).
fn preface(settings: &[(u16, u32)]) -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let payload: Vec<u8> = settings
        .iter()
        .flat_map(|(id, value)| [id.to_be_bytes().to_vec(), value.to_be_bytes().to_vec()].concat())
        .collect();
    out.extend(frame(SETTINGS, 0, 0, &payload));
    out
}

/// HEADERS for `GET path` (HPACK: static-table method and scheme, literal path and authority).
fn get_frame(stream: u32, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"localhost");
    frame(HEADERS, END_STREAM | END_HEADERS, stream, &block)
}

fn rst(stream: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &8u32.to_be_bytes())
}

struct RawFrame {
    kind: u8,
    flags: u8,
    stream: u32,
}

/// Reads one frame; `None` when the connection ended.
async fn read_frame<R: AsyncRead + Unpin>(io: &mut R) -> Option<RawFrame> {
    let mut head = [0u8; 9];
    io.read_exact(&mut head).await.ok()?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await.ok()?;
    Some(RawFrame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
    })
}

/// One request whose response is read to its end, then frames are read (PINGs never
/// acknowledged) until the connection ends: how long that took after the response, and
/// whether a GOAWAY came.
async fn hold_without_ping_ack<I: AsyncRead + AsyncWrite + Unpin>(
    mut io: I,
    within: Duration,
) -> (Option<Duration>, bool) {
    io.write_all(&preface(&[])).await.unwrap();
    io.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
    io.write_all(&get_frame(1, "/x")).await.unwrap();
    loop {
        let f = read_frame(&mut io)
            .await
            .expect("closed before the response");
        if f.stream == 1 && f.flags & END_STREAM != 0 && (f.kind == DATA || f.kind == HEADERS) {
            break;
        }
    }
    let answered = Instant::now();
    let mut goaway = false;
    let ended = tokio::time::timeout(within, async {
        while let Some(f) = read_frame(&mut io).await {
            goaway |= f.kind == GOAWAY;
        }
    })
    .await;
    (ended.ok().map(|()| answered.elapsed()), goaway)
}

const CLOCKS: &str = "idle_timeout = \"1s\"\nclose_grace = \"1s\"";

#[tokio::test]
async fn an_h2_client_that_never_acks_the_closing_ping_is_cut_after_the_grace() {
    let upstream = Counting::start().await;
    let proxy = TestProxy::start(&config(&upstream.url(), CLOCKS)).await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (ended, goaway) = hold_without_ping_ack(tcp, Duration::from_secs(8)).await;
    let held = ended.expect("the connection outlived idle_timeout + close_grace");
    assert!(goaway, "no GOAWAY before the cut");
    assert!(
        held >= Duration::from_millis(1900),
        "cut before the grace: {held:?}"
    );
    assert_eq!(
        proxy
            .metric("gatehouse_limit_hits_total{limit=\"close_grace\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn over_tls_the_same_client_is_cut_too() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    let upstream = Counting::start().await;
    let toml = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\ntls.cert = \"{d}/tls.crt\"\ntls.key = \"{d}/tls.key\"\n{}",
        config(&upstream.url(), CLOCKS),
        d = dir.path().display()
    );
    let proxy = TestProxy::start(&toml).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (ended, _) = hold_without_ping_ack(tls, Duration::from_secs(8)).await;
    ended.expect("the TLS connection outlived idle_timeout + close_grace");
}

#[tokio::test]
async fn a_reset_after_accept_flood_gets_goaway_and_few_upstream_connections() {
    let upstream = Counting::start().await;
    let proxy = TestProxy::start(&config(&upstream.url(), "http2_max_resets = 10")).await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut read, mut write) = tcp.into_split();
    write.write_all(&preface(&[])).await.unwrap();
    write
        .write_all(&frame(SETTINGS, ACK, 0, &[]))
        .await
        .unwrap();
    let goaway = tokio::spawn(async move {
        while let Some(f) = read_frame(&mut read).await {
            if f.kind == GOAWAY {
                return true;
            }
        }
        false
    });
    // The attacker ignores the GOAWAY (and never acks the PING of a graceful close): it
    // keeps opening streams until the connection is gone.
    let mut sent = 0;
    for stream in (1u32..).step_by(2).take(200) {
        let headers = write.write_all(&get_frame(stream, "/slow")).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        if headers.is_err() || write.write_all(&rst(stream)).await.is_err() {
            break;
        }
        sent += 1;
    }
    let got_goaway = tokio::time::timeout(Duration::from_secs(5), goaway)
        .await
        .expect("no GOAWAY after the reset budget")
        .unwrap();
    assert!(got_goaway, "the connection ended without GOAWAY");
    assert!(sent < 200, "all 200 reset streams were accepted");
    assert!(
        upstream.accepted() <= 12,
        "{} upstream connections for {sent} reset streams",
        upstream.accepted()
    );
}

#[tokio::test]
async fn a_stream_reset_with_its_headers_starts_no_upstream_request() {
    let upstream = Counting::start().await;
    let proxy = TestProxy::start(&config(&upstream.url(), "")).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(&preface(&[])).await.unwrap();
    let mut burst = Vec::new();
    for stream in (1u32..).step_by(2).take(10) {
        burst.extend(get_frame(stream, "/slow"));
        burst.extend(rst(stream));
    }
    tcp.write_all(&burst).await.unwrap();
    // A request that is not reset: once it is answered, the reset ones had their chance.
    tcp.write_all(&get_frame(21, "/x")).await.unwrap();
    loop {
        let f = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut tcp))
            .await
            .unwrap()
            .expect("closed before the last answer");
        if f.stream == 21 && f.flags & END_STREAM != 0 {
            break;
        }
    }
    assert_eq!(upstream.requests(), 1, "reset streams reached the upstream");
}

#[tokio::test]
async fn an_http1_client_that_stops_reading_is_cut_and_the_upstream_released() {
    let upstream = Counting::start().await;
    let proxy = TestProxy::start(&config(&upstream.url(), "write_timeout = \"1s\"")).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"GET /big HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async { upstream.open() == 1 }).await,
        "the request never reached the upstream"
    );
    let released = eventually(Duration::from_secs(6), || async { upstream.open() == 0 }).await;
    assert!(
        released,
        "the upstream connection is still held for a client that does not read"
    );
    // Reading now drains what was buffered, then meets the end: the body never ends otherwise.
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = vec![0u8; 1 << 16];
        while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    assert!(drained.is_ok(), "the stalled connection was left open");
    assert_eq!(
        proxy
            .metric("gatehouse_limit_hits_total{limit=\"write_timeout\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn an_h2_client_with_a_zero_window_releases_its_upstream_connections() {
    let upstream = Counting::start().await;
    let limits = "write_timeout = \"1s\"\nidle_timeout = \"1s\"\nclose_grace = \"1s\"";
    let proxy = TestProxy::start(&config(&upstream.url(), limits)).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: no stream may carry a byte of DATA.
    tcp.write_all(&preface(&[(0x4, 0)])).await.unwrap();
    tcp.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
    for stream in (1u32..).step_by(2).take(5) {
        tcp.write_all(&get_frame(stream, "/big")).await.unwrap();
    }
    assert!(
        eventually(Duration::from_secs(5), || async { upstream.open() == 5 }).await,
        "the requests never reached the upstream ({} open)",
        upstream.open()
    );
    let started = Instant::now();
    let released = eventually(Duration::from_secs(6), || async { upstream.open() == 0 }).await;
    assert!(
        released,
        "{} upstream connections held by a zero window",
        upstream.open()
    );
    // With every stream abandoned the connection is idle, and idle ends in a cut.
    let ended = tokio::time::timeout(Duration::from_secs(8), async {
        while read_frame(&mut tcp).await.is_some() {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the connection outlived its abandoned streams"
    );
    assert!(started.elapsed() < Duration::from_secs(14));
}

// === Watched files ===

fn mkfifo(path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success());
}

/// SIGTERM must end the process promptly; `wait` runs on a thread so a hang fails the test.
fn terminates_within(proc: Proc, within: Duration) -> (i32, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(proc.terminate());
    });
    rx.recv_timeout(within)
        .expect("SIGTERM did not end gatehouse: a watched file froze it")
}

#[tokio::test]
async fn a_fifo_as_the_config_or_the_tls_key_freezes_neither_reload_nor_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    let upstream = Counting::start().await;
    let file = dir.path().join("gatehouse.toml");
    let toml = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\ntls.cert = \"{}\"\ntls.key = \"{}\"\ntls.reload_interval = \"100ms\"\n[admin]\naddr = \"127.0.0.1:0\"\n[reload]\ninterval = \"100ms\"\n{}",
        crt.display(),
        key.display(),
        config(&upstream.url(), "")
    );
    std::fs::write(&file, toml).unwrap();
    let (proc, _addr) = Proc::start(&file);
    let healthz = format!("http://{}/healthz", proc.admin);
    assert_eq!(get(&healthz, &[]).await.status, 200);

    mkfifo(&key);
    mkfifo(&file);
    proc.signal("HUP");
    // Several watch ticks and the SIGHUP reload have met both FIFOs by now.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let answered = tokio::time::timeout(Duration::from_secs(3), get(&healthz, &[])).await;
    assert!(
        answered.is_ok_and(|a| a.status == 200),
        "a FIFO froze the listeners"
    );
    let (_code, output) = terminates_within(proc, Duration::from_secs(10));
    assert!(
        output.contains("not a regular file"),
        "the FIFO was not reported:\n{output}"
    );
}

/// A POST that announces a large body, sends a little of it and then nothing more.
async fn stalled_upload(proxy: &TestProxy, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let head =
        format!("POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1000000\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&[b'x'; 10]).await.unwrap();
    tcp
}

#[tokio::test]
async fn an_upload_that_stops_before_the_answer_gets_408() {
    let upstream = Counting::start().await;
    let proxy = TestProxy::start(&config(&upstream.url(), "body_stall_timeout = \"1s\"")).await;
    let mut tcp = stalled_upload(&proxy, "/after-body").await;
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut answer))
        .await
        .expect("no answer to a stalled upload")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        eventually(Duration::from_secs(5), || async { upstream.open() == 0 }).await,
        "the upstream connection is still held for a stalled upload"
    );
    assert_eq!(
        proxy
            .metric("gatehouse_limit_hits_total{limit=\"body_stall_timeout\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn an_upload_that_stops_after_an_early_answer_releases_the_upstream() {
    let upstream = Counting::start().await;
    let proxy = TestProxy::start(&config(&upstream.url(), "body_stall_timeout = \"1s\"")).await;
    let _tcp = stalled_upload(&proxy, "/consume").await;
    assert!(
        eventually(Duration::from_secs(5), || async { upstream.open() == 1 }).await,
        "the upload never reached the upstream"
    );
    // The upstream answered at once and keeps reading: only the upload clock can end this.
    assert!(
        eventually(Duration::from_secs(6), || async { upstream.open() == 0 }).await,
        "the upstream connection is still held by a client that stopped uploading"
    );
}
