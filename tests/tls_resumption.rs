//! TLS session resumption across replicas: two real `gatehouse run` processes share one
//! session-ticket key file; a real rustls client takes a ticket from one and presents it
//! to the other. Rotating the file (a new sealing key first) keeps old tickets resuming;
//! removing their key ends that, and the client falls back to a full handshake.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::{HandshakeKind, NamedGroup};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client session store in two modes. Harvesting: offer nothing (so every handshake is
/// full) and keep every TLS 1.3 ticket the server sends. Probing: offer the oldest kept
/// ticket, once, and drop the tickets the resumed connection brings. Each probe then
/// shows exactly what one old ticket does on one replica.
#[derive(Debug)]
struct Tickets {
    harvesting: AtomicBool,
    kept: Mutex<VecDeque<Tls13ClientSessionValue>>,
    rest: ClientSessionMemoryCache,
}

impl Tickets {
    fn new() -> Arc<Tickets> {
        Arc::new(Tickets {
            harvesting: AtomicBool::new(true),
            kept: Mutex::default(),
            rest: ClientSessionMemoryCache::new(8),
        })
    }
}

impl ClientSessionStore for Tickets {
    fn set_kx_hint(&self, name: ServerName<'static>, group: NamedGroup) {
        self.rest.set_kx_hint(name, group)
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<NamedGroup> {
        self.rest.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        _: ServerName<'static>,
        _: rustls::client::Tls12ClientSessionValue,
    ) {
    }
    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        None
    }
    fn remove_tls12_session(&self, _: &ServerName<'static>) {}
    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        if self.harvesting.load(Ordering::SeqCst) {
            self.kept.lock().unwrap().push_back(value);
        }
    }
    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        if self.harvesting.load(Ordering::SeqCst) {
            return None;
        }
        self.kept.lock().unwrap().pop_front()
    }
}

struct Client {
    config: Arc<rustls::ClientConfig>,
    tickets: Arc<Tickets>,
}

impl Client {
    fn new(ca: &Ca) -> Client {
        let tickets = Tickets::new();
        let mut config = ca.client_config(&[b"http/1.1"]);
        config.resumption = rustls::client::Resumption::store(tickets.clone());
        Client {
            config: Arc::new(config),
            tickets,
        }
    }

    fn probe(&self) {
        self.tickets.harvesting.store(false, Ordering::SeqCst);
    }
}

fn key_line(seed: u8) -> String {
    // Distinct, non-repeating bytes per seed; the file format only needs 48 bytes.
    let bytes: Vec<u8> = (0..48u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(seed.wrapping_mul(101)) ^ seed)
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Replaces the key file the way a Secret update does: a new file renamed into place.
fn write_keys(dir: &Path, seeds: &[u8]) {
    let text: Vec<String> = seeds.iter().map(|s| key_line(*s)).collect();
    std::fs::write(dir.join("keys.tmp"), text.join("\n") + "\n").unwrap();
    std::fs::rename(dir.join("keys.tmp"), dir.join("ticket.keys")).unwrap();
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("gatehouse.toml");
    let toml = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n\
         tls.cert = \"{d}/tls.crt\"\ntls.key = \"{d}/tls.key\"\n\
         tls.reload_interval = \"100ms\"\n\
         tls.session_ticket_keys_file = \"{d}/ticket.keys\"\n\
         [admin]\naddr = \"127.0.0.1:0\"\n\
         [[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n",
        d = dir.display()
    );
    std::fs::write(&config, toml).unwrap();
    config
}

/// One TLS 1.3 connection and one request, read to the end so the server's tickets
/// (sent after its Finished) reach the store. Returns how the handshake went.
/// The client config is built once per store: rustls resumes a session only under the
/// certificate verifier that verified it.
async fn connect(client: &Client, addr: &str) -> HandshakeKind {
    let connector = tokio_rustls::TlsConnector::from(client.config.clone());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    tls.write_all(b"GET /nothing HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    assert!(answer.starts_with(b"HTTP/1.1 "), "{answer:?}");
    kind
}

async fn wait_for_reloads(replicas: &[&Proc], count: usize) {
    let reloaded = |p: &Proc| {
        p.output()
            .matches("TLS session ticket keys reloaded")
            .count()
    };
    let all = eventually(Duration::from_secs(10), || async {
        replicas.iter().all(|p| reloaded(p) >= count)
    })
    .await;
    assert!(all, "a replica did not reload the key file");
}

#[tokio::test]
async fn a_ticket_from_one_replica_resumes_on_another_until_its_key_retires() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.issue(dir.path(), "replicas");
    write_keys(dir.path(), &[1]);
    let config = write_config(dir.path());
    let (a, a_addr) = Proc::start(&config);
    let (b, b_addr) = Proc::start(&config);

    let client = Client::new(&ca);
    for _ in 0..3 {
        assert_eq!(connect(&client, &a_addr).await, HandshakeKind::Full);
    }
    assert!(
        client.tickets.kept.lock().unwrap().len() >= 5,
        "A sent too few tickets"
    );
    client.probe();
    assert_eq!(
        connect(&client, &b_addr).await,
        HandshakeKind::Resumed,
        "B did not resume A's ticket"
    );

    // Rotation: a new sealing key first, the old one kept to open its tickets.
    write_keys(dir.path(), &[2, 1]);
    wait_for_reloads(&[&a, &b], 1).await;
    assert_eq!(connect(&client, &b_addr).await, HandshakeKind::Resumed);
    assert_eq!(connect(&client, &a_addr).await, HandshakeKind::Resumed);

    // Retirement: the old key is gone, so its tickets no longer open anywhere.
    write_keys(dir.path(), &[2]);
    wait_for_reloads(&[&a, &b], 2).await;
    assert_eq!(connect(&client, &b_addr).await, HandshakeKind::Full);
    assert_eq!(connect(&client, &a_addr).await, HandshakeKind::Full);

    // Tickets sealed with the new key resume across replicas too.
    let fresh = Client::new(&ca);
    connect(&fresh, &b_addr).await;
    fresh.probe();
    assert_eq!(connect(&fresh, &a_addr).await, HandshakeKind::Resumed);

    for replica in [a, b] {
        let (_, output) = replica.terminate();
        for seed in [1, 2] {
            assert!(!output.contains(&key_line(seed)), "a key reached the log");
        }
    }
}

/// Without a key file, sessions live in each replica's memory: the same replica resumes,
/// another one cannot.
#[tokio::test]
async fn without_a_key_file_only_the_same_replica_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.issue(dir.path(), "cache");
    write_keys(dir.path(), &[1]);
    let config = write_config(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.contains("session_ticket_keys_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, without).unwrap();
    let (a, a_addr) = Proc::start(&config);
    let (b, b_addr) = Proc::start(&config);

    let client = Client::new(&ca);
    for _ in 0..2 {
        assert_eq!(connect(&client, &a_addr).await, HandshakeKind::Full);
    }
    client.probe();
    assert_eq!(connect(&client, &a_addr).await, HandshakeKind::Resumed);
    assert_eq!(connect(&client, &b_addr).await, HandshakeKind::Full);
    a.terminate();
    b.terminate();
}

/// A client that speaks TLS 1.2 only and keeps its sessions (resumed by session ID from a
/// replica without a key file).
fn tls12_client(ca: &Ca) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.issuer.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::in_memory_sessions(8)
        .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOrTickets);
    Arc::new(config)
}

async fn connect_with(config: &Arc<rustls::ClientConfig>, addr: &str) -> HandshakeKind {
    let client = Client {
        config: config.clone(),
        tickets: Tickets::new(),
    };
    connect(&client, addr).await
}

/// `session_ticket_lifetime` bounds the per-replica cache too: rustls' cache keeps a
/// session until newer ones push it out, and its TLS 1.3 tickets announce 24 hours.
#[tokio::test]
async fn a_cached_session_older_than_the_lifetime_does_not_resume() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.issue(dir.path(), "aged");
    let config = write_config(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    let aged: String = text
        .lines()
        .filter(|l| !l.contains("session_ticket_keys_file"))
        .map(|l| match l {
            "tls.reload_interval = \"100ms\"" => {
                format!("{l}\ntls.session_ticket_lifetime = \"1s\"\n")
            }
            _ => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&config, aged).unwrap();
    let (a, addr) = Proc::start(&config);

    // TLS 1.3: tickets that are keys into the cache, taken once.
    let client = Client::new(&ca);
    for _ in 0..2 {
        assert_eq!(connect(&client, &addr).await, HandshakeKind::Full);
    }
    client.probe();
    assert_eq!(connect(&client, &addr).await, HandshakeKind::Resumed);
    // TLS 1.2: a session ID, looked up as often as the client returns.
    let tls12 = tls12_client(&ca);
    assert_eq!(connect_with(&tls12, &addr).await, HandshakeKind::Full);
    assert_eq!(connect_with(&tls12, &addr).await, HandshakeKind::Resumed);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        connect(&client, &addr).await,
        HandshakeKind::Full,
        "TLS 1.3"
    );
    assert_eq!(
        connect_with(&tls12, &addr).await,
        HandshakeKind::Full,
        "TLS 1.2"
    );
    a.terminate();
}
