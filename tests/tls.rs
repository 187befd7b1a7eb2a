//! Real TLS with rcgen certificates: HTTP/1.1 and HTTP/2 (ALPN) through the proxy, and a
//! certificate swap on disk that new handshakes pick up while open connections carry on.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(dir: &Path, upstream: &Upstream) -> TestProxy {
    start_with(dir, upstream, "").await
}

/// `extra` is more `[listen]` lines (dotted `tls.*` keys).
async fn start_with(dir: &Path, upstream: &Upstream, extra: &str) -> TestProxy {
    let toml = format!(
        r#"
[listen]
addr = "127.0.0.1:0"
tls.cert = "{dir}/tls.crt"
tls.key = "{dir}/tls.key"
tls.reload_interval = "100ms"
{extra}

{HS_ISSUER}

[[route]]
path = "/"
upstream = "{up}"
"#,
        dir = dir.display(),
        up = upstream.url()
    );
    TestProxy::start_with_secrets(&toml, &[("HS", SECRET)]).await
}

fn token() -> String {
    mint_hs(&claims(ISS, "api", json!({})))
}

async fn request_over(ca: &Ca, http2: bool, port: u16) -> (u16, Version) {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(ca.client_config(&[]))
        .https_only();
    let connector = if http2 {
        builder.enable_http2().build()
    } else {
        builder.enable_http1().build()
    };
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build(connector);
    let request = Request::get(format!("https://localhost:{port}/tls"))
        .header("authorization", format!("Bearer {}", token()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (status, version) = (response.status().as_u16(), response.version());
    response.into_body().collect().await.unwrap();
    (status, version)
}

async fn handshake(ca: &Ca, port: u16) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(ca.client_config(&[b"http/1.1"])));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

fn leaf_of(
    stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

#[tokio::test]
async fn http1_and_http2_clients_reach_the_upstream_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.issue(dir.path(), "first");
    let upstream = Upstream::echo().await;
    let proxy = start(dir.path(), &upstream).await;
    let port = proxy.addr.port();

    assert_eq!(
        request_over(&ca, false, port).await,
        (200, Version::HTTP_11)
    );
    assert_eq!(upstream.last().headers["x-forwarded-proto"], "https");
    assert_eq!(request_over(&ca, true, port).await, (200, Version::HTTP_2));
    assert_eq!(upstream.requests().len(), 2);
    assert!(upstream.last().headers.get("authorization").is_none());
}

#[tokio::test]
async fn a_certificate_swap_is_picked_up_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let first = ca.issue(dir.path(), "first");
    let upstream = Upstream::echo().await;
    let proxy = start(dir.path(), &upstream).await;
    let port = proxy.addr.port();

    let mut open = handshake(&ca, port).await;
    assert_eq!(leaf_of(&open), first);

    let second = ca.issue(dir.path(), "second");
    let swapped = eventually(Duration::from_secs(5), || async {
        leaf_of(&handshake(&ca, port).await) == second
    })
    .await;
    assert!(swapped, "new handshakes still get the old certificate");

    // The connection opened before the swap still serves requests.
    let request = format!(
        "GET /still-open HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token()
    );
    open.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    open.read_to_end(&mut reply).await.unwrap();
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));
    assert_eq!(upstream.last().uri, "/still-open");
}

/// An HTTPS upstream with a certificate from `ca`, answering "secure upstream".
async fn tls_upstream(ca: &Ca, dir: &Path) -> u16 {
    let leaf = dir.join("upstream");
    std::fs::create_dir_all(&leaf).unwrap();
    ca.issue(&leaf, "upstream");
    let certified = gatehouse::edge::tls::load_certified_key(
        &leaf.join("tls.crt"),
        &leaf.join("tls.key"),
        gatehouse::config::TlsProvider::AwsLcRs,
    )
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        certified.cert.clone(),
        PrivateKeyDer::from_pem_file(leaf.join("tls.key")).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(full("secure upstream")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let port = tls_upstream(&ca, dir.path()).await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.issuer.pem()).unwrap();
    let route = |extra: &str| {
        format!(
            "[[route]]\npath = \"/\"\nupstream = \"https://localhost:{port}\"\nauth = \"none\"\n{extra}\n"
        )
    };
    let trusted = TestProxy::start(&route(&format!("upstream_ca_file = {ca_file:?}"))).await;
    let answer = get(&trusted.url("/x"), &[]).await;
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_str()),
        (200, "secure upstream")
    );

    // The same upstream without its CA is not trusted: 502, never a silent plaintext fallback.
    let untrusted = TestProxy::start(&route("")).await;
    assert_eq!(get(&untrusted.url("/x"), &[]).await.status, 502);
}

/// The server picks the suite: a client listing AES-256-GCM-SHA384 first (as OpenSSL's
/// do) still gets the cheaper SHA-256 key schedule, in TLS 1.3 and 1.2; and only the
/// configured key-exchange groups are used.
#[tokio::test]
async fn the_server_prefers_sha256_suites_and_the_configured_groups() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.issue(dir.path(), "suites");
    let upstream = Upstream::echo().await;
    let proxy = start_with(dir.path(), &upstream, "tls.kx_groups = [\"P-256\"]").await;
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites.sort_by_key(|s| {
            !matches!(
                s.suite(),
                rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
                    | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            )
        });
        let tls = handshake_with(&ca, provider, &[version], proxy.addr).await;
        let conn = tls.get_ref().1;
        let suite = conn.negotiated_cipher_suite().unwrap().suite();
        assert!(
            matches!(
                suite,
                rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                    | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            ),
            "{version:?}: {suite:?}"
        );
        // The client sends an X25519 share first; only P-256 is offered, so it is asked again.
        let group = conn.negotiated_key_exchange_group().unwrap().name();
        assert_eq!(group, rustls::NamedGroup::secp256r1, "{version:?}");
    }
}

/// Both providers serve; aws-lc-rs (the default) also offers the hybrid post-quantum group
/// to a client that sends a share for it.
#[tokio::test]
async fn both_providers_handshake_and_aws_lc_rs_speaks_post_quantum() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.issue(dir.path(), "providers");
    let upstream = Upstream::echo().await;
    let cases = [
        ("", "X25519MLKEM768", rustls::NamedGroup::X25519MLKEM768),
        ("ring", "X25519", rustls::NamedGroup::X25519),
    ];
    for (provider, group, want) in cases {
        let mut extra = format!("tls.kx_groups = [{group:?}]");
        if !provider.is_empty() {
            extra.push_str(&format!("\ntls.provider = {provider:?}"));
        }
        let proxy = start_with(dir.path(), &upstream, &extra).await;
        let client = rustls::crypto::aws_lc_rs::default_provider();
        let versions = rustls::DEFAULT_VERSIONS;
        let tls = handshake_with(&ca, client, versions, proxy.addr).await;
        let negotiated = tls.get_ref().1.negotiated_key_exchange_group().unwrap();
        assert_eq!(negotiated.name(), want, "provider {provider:?}");
    }
}

/// A TLS connection to `addr` from a client with `provider` and `versions` that trusts `ca`.
async fn handshake_with(
    ca: &Ca,
    provider: rustls::crypto::CryptoProvider,
    versions: &[&'static rustls::SupportedProtocolVersion],
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.issuer.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// A leaf for `localhost` signed by `ca`, valid until 1 January of `year`: (certificate
/// PEM, key PEM).
fn leaf_until(ca: &Ca, year: i32) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(year, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A renewal that does not load (here, a certificate whose key was not written) leaves the
/// old chain in service, so the expiry gauge, which the expiry alerts read, must stay on
/// the old chain's date rather than the file's.
#[tokio::test]
async fn the_expiry_gauge_follows_the_served_certificate_not_the_file() {
    const UNTIL_2031: f64 = 1_924_992_000.0;
    const UNTIL_2040: f64 = 2_208_988_800.0;
    let series = "gatehouse_certificate_expiry_timestamp_seconds{certificate=\"listen\"}";
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = leaf_until(&ca, 2031);
    std::fs::write(dir.path().join("tls.key"), key).unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert).unwrap();
    let upstream = Upstream::echo().await;
    let proxy = start(dir.path(), &upstream).await;
    assert_eq!(proxy.metric(series).await, UNTIL_2031);

    let (renewed, renewed_key) = leaf_until(&ca, 2040);
    std::fs::write(dir.path().join("tls.crt"), renewed).unwrap();
    // Ten reload intervals: the pair was tried, refused, and the gauge read again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(proxy.metric(series).await, UNTIL_2031);

    std::fs::write(dir.path().join("tls.key"), renewed_key).unwrap();
    let moved = eventually(Duration::from_secs(5), || async {
        proxy.metric(series).await == UNTIL_2040
    })
    .await;
    assert!(moved, "the gauge did not follow the renewal once it loaded");
}
