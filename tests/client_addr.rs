//! The real client behind proxies: a real HAProxy in front of gatehouse with PROXY
//! protocol v1 and v2 (`send-proxy`, `send-proxy-v2`, mode tcp) and with `option
//! forwardfor` (mode http). Clients connect from 127.0.0.2 and 127.0.0.3, HAProxy from
//! 127.0.0.1, the only trusted address. gatehouse must name the client (not HAProxy) in
//! the access log and the upstream's forwarding headers, and count it in per-client
//! limits; what an untrusted peer says about itself is replaced.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::haproxy::{connect_from, read_answer, request, Haproxy};
use support::*;
use tokio::io::AsyncWriteExt;

/// gatehouse (the real binary, so its access log can be read) in front of an echo upstream.
struct Gate {
    proc: Proc,
    addr: SocketAddr,
    upstream: Upstream,
    _dir: tempfile::TempDir,
}

async fn gate(listen: &str, limits: &str) -> Gate {
    let upstream = Upstream::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    let toml = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n{listen}\n\
         [admin]\naddr = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n[limits]\n{limits}\n\
         [[route]]\npath = \"/\"\nupstream = \"{}\"\nauth = \"none\"\n",
        upstream.url()
    );
    std::fs::write(&config, toml).unwrap();
    let (proc, addr) = Proc::start(&config);
    Gate {
        proc,
        addr: addr.parse().unwrap(),
        upstream,
        _dir: dir,
    }
}

impl Gate {
    /// The `client` field of every access line, in order, once there are `count` (a line is
    /// written when its response body ends, a moment after the client has read it).
    async fn logged_clients(&self, count: usize) -> Vec<String> {
        let lines = || {
            self.proc
                .output()
                .lines()
                .filter(|l| l.contains("gatehouse::access"))
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let fields = v.get("fields").unwrap_or(&v);
                    fields["client"].as_str().unwrap_or_default().to_string()
                })
                .collect::<Vec<String>>()
        };
        eventually(Duration::from_secs(10), || async { lines().len() >= count }).await;
        lines()
    }

    /// `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`, `Forwarded` of the
    /// last request the upstream received.
    fn forwarded(&self) -> [String; 4] {
        let seen = self.upstream.last();
        [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "forwarded",
        ]
        .map(|name| {
            let values: Vec<String> = seen
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            values.join(" | ")
        })
    }
}

const SPOOF: &str = "X-Forwarded-For: 10.0.0.1, 198.51.100.7\r\nX_Forwarded_For: 198.51.100.8\r\n\
    Forwarded: for=198.51.100.9;proto=https\r\nX-Real-IP: 198.51.100.10\r\n";

#[tokio::test]
async fn haproxy_send_proxy_v1_and_v2_name_the_real_client() {
    for server in ["send-proxy", "send-proxy-v2"] {
        let gate = gate("proxy_protocol = true", "").await;
        let Some(haproxy) = Haproxy::start("tcp", "", server, gate.addr).await else {
            return;
        };
        let mut socket = connect_from("127.0.0.2", haproxy.addr).await;
        let answer = request(&mut socket, "/a", SPOOF).await.unwrap();
        assert_eq!(answer.status, 200, "{server}: {answer:?}");
        assert_eq!(
            gate.forwarded(),
            [
                "127.0.0.2".to_string(),
                "http".into(),
                "app.example".into(),
                "for=127.0.0.2;proto=http;host=app.example".into()
            ],
            "{server}"
        );
        assert_eq!(gate.logged_clients(1).await, ["127.0.0.2"], "{server}");
    }
}

#[tokio::test]
async fn haproxy_forwardfor_names_the_real_client_and_its_proto_and_host_are_kept() {
    let gate = gate("", "").await;
    let frontend = "  option forwardfor\n  http-request set-header X-Forwarded-Proto https\n  \
                    http-request set-header X-Forwarded-Host public.example";
    let Some(haproxy) = Haproxy::start("http", frontend, "", gate.addr).await else {
        return;
    };
    // The client claims to be 10.0.0.1 (trusted) and more; HAProxy appends 127.0.0.2.
    let mut socket = connect_from("127.0.0.2", haproxy.addr).await;
    let answer = request(&mut socket, "/b", SPOOF).await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        gate.forwarded(),
        [
            "127.0.0.2".to_string(),
            "https".into(),
            "public.example".into(),
            "for=127.0.0.2;proto=https;host=public.example".into()
        ]
    );
    assert_eq!(gate.logged_clients(1).await, ["127.0.0.2"]);
}

#[tokio::test]
async fn an_untrusted_peer_speaks_only_for_itself() {
    let gate = gate("", "").await;
    let mut socket = connect_from("127.0.0.2", gate.addr).await;
    let spoof = format!("{SPOOF}X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n");
    let answer = request(&mut socket, "/c", &spoof).await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        gate.forwarded(),
        [
            "127.0.0.2".to_string(),
            "http".into(),
            "app.example".into(),
            "for=127.0.0.2;proto=http;host=app.example".into()
        ]
    );
    let seen = gate.upstream.last();
    for name in ["x_forwarded_for", "x-real-ip"] {
        assert!(
            seen.headers.get(name).is_none(),
            "{name} reached the upstream"
        );
    }
    assert_eq!(gate.logged_clients(1).await, ["127.0.0.2"]);
}

#[tokio::test]
async fn request_rates_are_counted_per_real_client_through_haproxy() {
    let gate = gate("", "requests_per_ip_per_second = 2").await;
    let Some(haproxy) = Haproxy::start("http", "  option forwardfor", "", gate.addr).await else {
        return;
    };
    // 127.0.0.2 spends its allowance: within a few requests one is refused (a burst that
    // straddles a one-second window may need a third or fourth).
    let mut first = connect_from("127.0.0.2", haproxy.addr).await;
    let mut statuses = Vec::new();
    while statuses.len() < 6 && statuses.last() != Some(&429) {
        statuses.push(request(&mut first, "/d", "").await.unwrap().status);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // 127.0.0.3 comes through the same HAProxy connection pool and is a client of its own.
    let mut other = connect_from("127.0.0.3", haproxy.addr).await;
    assert_eq!(request(&mut other, "/d", "").await.unwrap().status, 200);
    let logged = gate.logged_clients(statuses.len() + 1).await;
    assert!(
        logged.iter().all(|c| c == "127.0.0.2" || c == "127.0.0.3"),
        "{logged:?}"
    );
    assert_eq!(logged.last().map(String::as_str), Some("127.0.0.3"));
}

#[tokio::test]
async fn connections_per_ip_count_the_proxy_protocol_source() {
    let gate = gate("proxy_protocol = true", "max_connections_per_ip = 1").await;
    let Some(haproxy) = Haproxy::start("tcp", "", "send-proxy-v2", gate.addr).await else {
        return;
    };
    let mut held = connect_from("127.0.0.2", haproxy.addr).await;
    assert_eq!(request(&mut held, "/e", "").await.unwrap().status, 200);
    let mut second = connect_from("127.0.0.2", haproxy.addr).await;
    assert_eq!(request(&mut second, "/e", "").await.unwrap().status, 429);
    // Every connection reaches gatehouse from 127.0.0.1: only the header tells them apart.
    let mut other = connect_from("127.0.0.3", haproxy.addr).await;
    assert_eq!(request(&mut other, "/e", "").await.unwrap().status, 200);
}

#[tokio::test]
async fn a_proxy_protocol_listener_closes_connections_without_a_valid_header() {
    let gate = gate("proxy_protocol = true", "header_read_timeout = \"1s\"").await;
    for start in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"PROXY TCP4 010.0.0.1 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x04\x01\x02\x03\x04",
        // Never finished: closed by the header clock.
        b"PROXY TCP4 203.0.113.9",
    ] {
        let mut socket = connect_from("127.0.0.1", gate.addr).await;
        socket.write_all(start).await.unwrap();
        assert!(
            read_answer(&mut socket).await.is_none(),
            "{start:?} was answered"
        );
    }
    // A valid header from a peer we do not trust is read past and not believed.
    let mut socket = connect_from("127.0.0.2", gate.addr).await;
    socket
        .write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 4000 443\r\n")
        .await
        .unwrap();
    assert_eq!(request(&mut socket, "/f", "").await.unwrap().status, 200);
    assert_eq!(gate.forwarded()[0], "127.0.0.2");
    assert_eq!(gate.logged_clients(1).await, ["127.0.0.2"]);
}

#[tokio::test]
async fn ipv6_clients_share_a_limit_per_64() {
    let gate = gate("proxy_protocol = true", "requests_per_ip_per_second = 1").await;
    let addr = gate.addr;
    let from = |source: &'static str| async move {
        let mut socket = connect_from("127.0.0.1", addr).await;
        let header = format!("PROXY TCP6 {source} ::1 4000 443\r\n");
        socket.write_all(header.as_bytes()).await.unwrap();
        request(&mut socket, "/g", "").await.unwrap().status
    };
    // Two addresses of one /64, back to back: the second is refused (tried again when the
    // pair straddled a one-second window).
    let mut shared = false;
    for _ in 0..3 {
        from("2001:db8:1:2::1").await;
        if from("2001:db8:1:2:ffff::2").await == 429 {
            shared = true;
            break;
        }
    }
    assert!(shared, "the same /64 never shared one allowance");
    assert_eq!(
        from("2001:db8:1:3::1").await,
        200,
        "another /64 has its own"
    );
    let logged = gate.logged_clients(1).await;
    assert_eq!(
        logged[0], "2001:db8:1:2::1",
        "the log names the whole address"
    );
    assert_eq!(gate.forwarded()[0], "2001:db8:1:3::1");
}

#[tokio::test]
async fn tls_behind_haproxy_send_proxy_v2_names_the_client_and_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    let listen = format!(
        "proxy_protocol = true\ntls.cert = \"{}\"\ntls.key = \"{}\"",
        crt.display(),
        key.display()
    );
    let gate = gate(&listen, "").await;
    let Some(haproxy) = Haproxy::start("tcp", "", "send-proxy-v2", gate.addr).await else {
        return;
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = connect_from("127.0.0.2", haproxy.addr).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /tls HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut tls, &mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        gate.forwarded(),
        [
            "127.0.0.2".to_string(),
            "https".into(),
            "app.example".into(),
            "for=127.0.0.2;proto=https;host=app.example".into()
        ]
    );
    assert_eq!(gate.logged_clients(1).await, ["127.0.0.2"]);
}

/// A header that names no address (v1 `UNKNOWN`, v2 `LOCAL`, v2 `UNSPEC`, v2 over a unix
/// socket) from the trusted balancer: the balancer does not say who the client is, and
/// behind an L4 balancer the HTTP headers are the client's own, so the client's
/// `X-Forwarded-For` must not choose the address. The peer is the client.
#[tokio::test]
async fn an_addressless_proxy_header_leaves_the_peer_as_the_client() {
    let gate = gate("proxy_protocol = true", "").await;
    let v2 = |command: u8, family: u8, addresses: usize| {
        let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        header.extend([command, family]);
        header.extend(u16::try_from(addresses).unwrap().to_be_bytes());
        header.extend(std::iter::repeat_n(0u8, addresses));
        header
    };
    let headers = [
        b"PROXY UNKNOWN\r\n".to_vec(),
        b"PROXY UNKNOWN 203.0.113.9 127.0.0.1 4000 443\r\n".to_vec(),
        v2(0x20, 0x00, 0),   // LOCAL
        v2(0x21, 0x00, 0),   // PROXY, UNSPEC
        v2(0x21, 0x31, 216), // PROXY, UNIX stream
    ];
    for header in &headers {
        let mut socket = connect_from("127.0.0.1", gate.addr).await;
        socket.write_all(header).await.unwrap();
        let spoof = "X-Forwarded-For: 9.9.9.9\r\nX-Forwarded-Proto: https\r\n";
        let answer = request(&mut socket, "/h", spoof).await.unwrap();
        assert_eq!(answer.status, 200, "{header:?}");
        assert_eq!(gate.forwarded()[..2], ["127.0.0.1", "http"], "{header:?}");
    }
    let logged = gate.logged_clients(headers.len()).await;
    assert!(logged.iter().all(|c| c == "127.0.0.1"), "{logged:?}");
}
