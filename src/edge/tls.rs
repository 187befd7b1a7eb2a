//! TLS for the public listener: rustls (aws-lc-rs or ring), TLS 1.2 and 1.3 only, ALPN `h2`
//! and `http/1.1`, the configured key-exchange groups, session resumption (a per-replica
//! cache, or tickets sealed with the replicas' shared keys), and a certificate that
//! reloads when its files change.
//!
//! The certificate lives behind a resolver holding an `ArcSwap`, so a reload swaps it for
//! new handshakes while open connections keep the one they negotiated. Files are polled
//! by content rather than watched with inotify: Kubernetes updates
//! mounted secrets by swapping a symlink, which inotify watches on the file miss.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::session_cache::AgedCache;
use super::ticketer::{self, SharedTicketer};
use crate::config::{KxGroup, Resumption, TlsFiles, TlsProvider};
use crate::ticket_keys::KeyRing;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Makes aws-lc-rs the process's rustls provider. This build has both providers, so a
/// library that asks rustls for the default (the Redis client over `rediss://`) would
/// otherwise find none and panic. An earlier choice stands.
pub fn install_process_default() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Reads a PEM chain and key into a rustls `CertifiedKey`.
pub fn load_certified_key(
    cert: &Path,
    key: &Path,
    provider: TlsProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let chain_pem =
        crate::files::read(cert).map_err(|e| format!("reading {}: {e}", cert.display()))?;
    let key_pem =
        crate::files::read(key).map_err(|e| format!("reading key {}: {e}", key.display()))?;
    let chain = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("parsing {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("parsing key {}: {}", key.display(), pem_problem(&e)))?;
    let signing_key = base_provider(provider)
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("key {}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|e| format!("{} does not match {}: {e}", key.display(), cert.display()))?;
    Ok(Arc::new(certified))
}

/// What is wrong with a PEM file, in words that quote none of it: the parser's own message
/// quotes the line it stopped at, which for a key whose newlines were lost (pasted into a
/// one-line field) is the whole key, and would reach `check`'s output and every reload's
/// warning.
fn pem_problem(e: &rustls_pki_types::pem::Error) -> &'static str {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => {
            "a PEM section has no END line (were its newlines lost, e.g. pasted into one line?)"
        }
        Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        Error::Base64Decode(_) => "a PEM section's body is not valid base64",
        Error::NoItemsFound => "no private key in it (a PEM PRIVATE KEY section)",
        Error::SectionTooLarge => "a PEM section is larger than 256 MB",
        _ => "it is not a PEM private key",
    }
}

/// Serves whatever certificate was loaded last.
#[derive(Debug)]
pub struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
}

impl ReloadingCert {
    /// The certificate chain being served now: a renewal that did not load is not in it.
    pub(crate) fn served(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// What the listener's TLS is made of: the acceptor, the certificate it serves (for the
/// expiry gauge), and the tasks that reload the certificate and the ticket keys when
/// their files change.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub served: Arc<ReloadingCert>,
    pub tasks: Vec<BoxFuture<'static, ()>>,
}

pub fn acceptor(files: &TlsFiles, stop: CancellationToken) -> Result<Tls, String> {
    let resolver = Arc::new(ReloadingCert {
        current: ArcSwap::new(load_certified_key(&files.cert, &files.key, files.provider)?),
    });
    let provider = provider(files.provider, &files.kx_groups)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Our suite order, not the client's: OpenSSL-based clients list AES-256-GCM-SHA384
    // first, and its SHA-384 key schedule costs more per handshake than SHA-256.
    config.ignore_client_order = true;
    let mut tasks: Vec<BoxFuture<'static, ()>> = vec![Box::pin(watch(
        resolver.clone(),
        files.cert.clone(),
        files.key.clone(),
        files.provider,
        files.reload_interval,
        stop.clone(),
    ))];
    tasks.extend(resumption(&mut config, files, stop)?);
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        served: resolver,
        tasks,
    })
}

fn base_provider(provider: TlsProvider) -> rustls::crypto::CryptoProvider {
    match provider {
        TlsProvider::AwsLcRs => rustls::crypto::aws_lc_rs::default_provider(),
        TlsProvider::Ring => rustls::crypto::ring::default_provider(),
    }
}

/// The crypto provider with only the configured key-exchange groups, in their order.
fn provider(
    which: TlsProvider,
    groups: &[KxGroup],
) -> Result<rustls::crypto::CryptoProvider, String> {
    let mut provider = base_provider(which);
    provider.kx_groups = groups
        .iter()
        .map(|group| kx_group(which, *group))
        .collect::<Result<_, _>>()?;
    // SHA-256 suites first (AES-128-GCM, then ChaCha20-Poly1305), the SHA-384 ones last:
    // a TLS 1.3 handshake runs a few dozen HMACs, which SHA-256 does in hardware on most
    // CPUs (bench/README.md, "TLS termination").
    provider
        .cipher_suites
        .sort_by_key(|suite| suite_rank(suite.suite()));
    Ok(provider)
}

fn kx_group(
    provider: TlsProvider,
    group: KxGroup,
) -> Result<&'static dyn rustls::crypto::SupportedKxGroup, String> {
    use rustls::crypto::{aws_lc_rs::kx_group as aws, ring::kx_group as ring};
    Ok(match (provider, group) {
        (TlsProvider::AwsLcRs, KxGroup::X25519) => aws::X25519,
        (TlsProvider::AwsLcRs, KxGroup::P256) => aws::SECP256R1,
        (TlsProvider::AwsLcRs, KxGroup::P384) => aws::SECP384R1,
        (TlsProvider::AwsLcRs, KxGroup::X25519MlKem768) => aws::X25519MLKEM768,
        (TlsProvider::Ring, KxGroup::X25519) => ring::X25519,
        (TlsProvider::Ring, KxGroup::P256) => ring::SECP256R1,
        (TlsProvider::Ring, KxGroup::P384) => ring::SECP384R1,
        (TlsProvider::Ring, KxGroup::X25519MlKem768) => {
            return Err("X25519MLKEM768 needs provider = \"aws-lc-rs\"".to_string())
        }
    })
}

fn suite_rank(suite: rustls::CipherSuite) -> u8 {
    use rustls::CipherSuite as S;
    match suite {
        S::TLS13_AES_128_GCM_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        S::TLS13_CHACHA20_POLY1305_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => 1,
        _ => 2,
    }
}

/// Sets session storage and tickets; returns the key file's reload task when there is one.
fn resumption(
    config: &mut rustls::ServerConfig,
    files: &TlsFiles,
    stop: CancellationToken,
) -> Result<Option<BoxFuture<'static, ()>>, String> {
    match &files.resumption {
        Resumption::Off => {
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
            Ok(None)
        }
        Resumption::Cache {
            cache_size,
            lifetime,
        } => {
            // No ticketer: rustls then issues TLS 1.3 tickets that are only keys into this cache.
            config.session_storage = AgedCache::new(*cache_size, *lifetime);
            Ok(None)
        }
        Resumption::Tickets {
            keys_file,
            lifetime,
            cache_size,
        } => {
            config.session_storage = AgedCache::new(*cache_size, *lifetime);
            let ticketer = Arc::new(SharedTicketer::new(KeyRing::load(keys_file)?, *lifetime));
            config.ticketer = ticketer.clone();
            let watch = ticketer::watch(ticketer, keys_file.clone(), files.reload_interval, stop);
            Ok(Some(Box::pin(watch)))
        }
    }
}

async fn watch(
    resolver: Arc<ReloadingCert>,
    cert: PathBuf,
    key: PathBuf,
    provider: TlsProvider,
    every: Duration,
    stop: CancellationToken,
) {
    let mut seen = stamp(&cert, &key).await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = stamp(&cert, &key).await;
        if now == seen {
            continue;
        }
        // A half-written pair fails to load or to match; keep the old one and retry next tick.
        let (c, k) = (cert.clone(), key.clone());
        let loaded = tokio::task::spawn_blocking(move || load_certified_key(&c, &k, provider))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        match loaded {
            Ok(loaded) => {
                resolver.current.store(loaded);
                seen = now;
                tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
            }
            Err(error) => {
                tracing::warn!(%error, "TLS certificate changed but does not load yet; keeping the old one")
            }
        }
    }
}

/// The files' contents: a few kilobytes, compared every tick. Modification times can
/// repeat within a second when a pair is rewritten quickly; contents cannot.
async fn stamp(cert: &Path, key: &Path) -> Option<(Option<Vec<u8>>, Option<Vec<u8>>)> {
    let (cert, key) = (cert.to_path_buf(), key.to_path_buf());
    tokio::task::spawn_blocking(move || {
        (
            crate::files::read(&cert).ok(),
            crate::files::read(&key).ok(),
        )
    })
    .await
    .ok()
}
