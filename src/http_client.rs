//! The outbound HTTP client: pooled hyper-util client over rustls (ring), used for fetching
//! JWKS and discovery documents, introspection and OTLP export; and the TLS settings the
//! upstream connection pool (`upstream::pool`) shares.
//!
//! Roots are the system's CA bundle plus Mozilla's (webpki-roots) so a slim container
//! without `ca-certificates` still reaches public IdPs; a route may add its own CA file for
//! an internal upstream (re-read whenever the route's client is built, so on every reload).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// A pooled client whose request bodies are of type `B`.
pub type Pooled<B> = Client<HttpsConnector<HttpConnector>, B>;
/// The client for documents we fetch ourselves (JWKS, discovery).
pub type HttpClient = Pooled<Empty<Bytes>>;

/// Builds a pooled client. `extra_ca` adds a PEM bundle to the trusted roots.
pub fn build<B>(connect_timeout: Duration, extra_ca: Option<&Path>) -> Result<Pooled<B>, String>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let tls = tls_config(extra_ca)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_timer(TokioTimer::new())
        .build(https))
}

/// The TLS client settings for outbound connections: ring, safe protocol versions, the
/// base roots plus `extra_ca`. Callers set ALPN.
pub fn tls_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots(extra_ca)?)
    .with_no_client_auth())
}

/// Mozilla's roots plus the system's, read once per process: parsing the system bundle
/// costs tens of milliseconds, and every route's client (rebuilt on each reload) needs it.
fn base_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        // Unreadable system certificates are not fatal: webpki-roots covers public CAs.
        let native = rustls_native_certs::load_native_certs();
        let _ = roots.add_parsable_certificates(native.certs);
        roots
    })
}

fn roots(extra_ca: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = base_roots().clone();
    if let Some(path) = extra_ca {
        let pem =
            crate::files::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("parsing {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no certificate", path.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(roots)
}
