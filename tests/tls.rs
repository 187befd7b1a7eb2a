//! Real TLS with rcgen certificates: HTTP/1.1 and HTTP/2 (ALPN) through the proxy, and a
//! certificate swap on disk that new handshakes pick up while open connections carry on.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ISS: &str = "https://sts.example/";
const SECRET: &str = "0123456789abcdef0123456789abcdef";

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "gatehouse test CA");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// Writes a leaf for `localhost` named `cn` to `dir/tls.crt` and `dir/tls.key`.
    fn issue(&self, dir: &Path, cn: &str) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        // Write the key first: the proxy polls both, and a mismatched pair is simply retried.
        std::fs::write(dir.join("tls.key.tmp"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("tls.crt.tmp"), cert.pem()).unwrap();
        std::fs::rename(dir.join("tls.key.tmp"), dir.join("tls.key")).unwrap();
        std::fs::rename(dir.join("tls.crt.tmp"), dir.join("tls.crt")).unwrap();
        cert.der().clone()
    }

    fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

async fn start(dir: &Path, upstream: &Upstream) -> TestProxy {
    let toml = format!(
        r#"
[listen]
addr = "127.0.0.1:0"
tls.cert = "{dir}/tls.crt"
tls.key = "{dir}/tls.key"
tls.reload_interval = "100ms"

[[issuer]]
name = "sts"
issuer = "{ISS}"
audiences = ["api"]
hmac_secret_env = "HS"

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
    mint_with(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        &claims(ISS, "api", json!({})),
    )
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
