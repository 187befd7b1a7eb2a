//! An issuer's verification keys: loading, periodic refresh, and the unknown-`kid` refresh.
//!
//! Static sources (PEM file, JWKS file, HMAC secret) load with the config, at start and at
//! each reload (the reload watch follows their files). Remote sources (a JWKS URL
//! or OIDC discovery) are fetched in the background every `refresh`; a token with a `kid`
//! we do not know may trigger one early refresh, but only one at a time (single flight)
//! and at most once per [`UNKNOWN_KID_INTERVAL`], so random kids cannot make us hammer the
//! IdP. A failed fetch never replaces the last good key set: an IdP outage keeps serving
//! the keys we had, and the age of those keys is exported as a metric. A fetched set
//! always replaces it, even one with no usable key: the IdP has withdrawn the others. Only
//! the first set must hold a usable key, for the issuer to be ready.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::Algorithm;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub mod keys;

use crate::config::{IssuerConfig, KeySource};
use crate::http_client::HttpClient;
use crate::metrics::{IdpEndpoint as Endpoint, Metrics};
pub use keys::{Keys, VerifyKey};

/// The least time between two refreshes triggered by unknown kids, per issuer.
pub const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(30);
/// A JWKS or discovery document larger than this is refused.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Retry delay while an issuer has no keys at all yet.
const INITIAL_RETRY: Duration = Duration::from_secs(2);

/// Loads keys from a static source (PEM, JWKS file, HMAC secret).
pub fn load_static(source: &KeySource, alg: Algorithm) -> Result<Keys, String> {
    match source {
        KeySource::Hmac(secret) => Ok(keys::hmac(secret)),
        KeySource::PublicKeyFile(path) => keys::public_key_file(path, alg),
        KeySource::JwksFile(path) => keys::jwks_file(path),
        KeySource::Discovery | KeySource::JwksUrl(_) => Err("remote key source".into()),
    }
}

/// The live key set of one issuer.
pub struct KeyStore {
    issuer: IssuerConfig,
    keys: ArcSwapOption<Keys>,
    /// Held while a fetch runs: concurrent unknown-kid misses wait for one fetch.
    fetching: tokio::sync::Mutex<()>,
    last_unknown_kid_fetch: Mutex<Option<Instant>>,
    last_success: Mutex<Option<Instant>>,
    client: HttpClient,
    metrics: Arc<Metrics>,
    /// Bumped on every key set installed here, once this store's generation serves
    /// (`key_board.rs` waits on it).
    changes: OnceLock<Arc<watch::Sender<u64>>>,
}

impl KeyStore {
    pub fn new(issuer: IssuerConfig, client: HttpClient, metrics: Arc<Metrics>) -> Arc<Self> {
        let store = Arc::new(Self {
            keys: ArcSwapOption::empty(),
            fetching: tokio::sync::Mutex::new(()),
            last_unknown_kid_fetch: Mutex::new(None),
            last_success: Mutex::new(None),
            client,
            metrics,
            issuer,
            changes: OnceLock::new(),
        });
        if !store.issuer.keys.is_remote() {
            let alg = store
                .issuer
                .algorithms
                .first()
                .copied()
                .unwrap_or(Algorithm::RS256);
            match load_static(&store.issuer.keys, alg) {
                Ok(keys) => store.install(keys),
                Err(e) => tracing::error!(issuer = %store.issuer.name, error = %e, "loading keys"),
            }
        }
        store
    }

    pub fn issuer(&self) -> &IssuerConfig {
        &self.issuer
    }

    pub fn keys(&self) -> Option<Arc<Keys>> {
        self.keys.load_full()
    }

    pub fn is_ready(&self) -> bool {
        self.keys.load().is_some()
    }

    /// Seconds since the last good key set was installed, for the staleness gauge.
    pub fn key_age(&self) -> Option<Duration> {
        lock(&self.last_success).map(|t| t.elapsed())
    }

    /// Starts with the keys another store for the same remote source already holds, as
    /// old as they are there; the first refresh replaces them.
    pub fn seed(&self, from: &KeyStore) {
        if let Some(keys) = from.keys() {
            self.keys.store(Some(keys));
            *lock(&self.last_success) = *lock(&from.last_success);
        }
    }

    fn install(&self, keys: Keys) {
        self.keys.store(Some(Arc::new(keys)));
        *lock(&self.last_success) = Some(Instant::now());
        if let Some(changes) = self.changes.get() {
            changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// From now on, every key set installed here bumps `changes`.
    pub(crate) fn report_to(&self, changes: &Arc<watch::Sender<u64>>) {
        let _ = self.changes.set(changes.clone());
    }

    /// Called on a token whose `kid` is unknown. Returns true when a refresh ran (here or
    /// in a concurrent caller) so the lookup is worth repeating.
    pub async fn refresh_for_unknown_kid(&self, kid: &str) -> bool {
        if !self.issuer.keys.is_remote() {
            return false;
        }
        let Ok(_guard) = self.fetching.try_lock() else {
            // Someone is fetching: wait for their result instead of fetching again.
            let _wait = self.fetching.lock().await;
            return self.keys().is_some_and(|k| k.knows_kid(kid));
        };
        {
            let mut last = lock(&self.last_unknown_kid_fetch);
            if last.is_some_and(|t| t.elapsed() < UNKNOWN_KID_INTERVAL) {
                self.metrics.jwks_refresh(&self.issuer.name, "rate_limited");
                return false;
            }
            *last = Some(Instant::now());
        }
        self.fetch_and_install().await
    }

    /// Background refresh for remote sources: quickly until the first key set, then every `refresh`.
    pub async fn run_refresh(self: Arc<Self>, stop: CancellationToken) {
        if !self.issuer.keys.is_remote() {
            return;
        }
        loop {
            let ok = {
                let _guard = self.fetching.lock().await;
                self.fetch_and_install().await
            };
            let wait = if ok || self.is_ready() {
                self.issuer.refresh
            } else {
                INITIAL_RETRY
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn fetch_and_install(&self) -> bool {
        let result = tokio::time::timeout(FETCH_TIMEOUT, self.fetch()).await;
        let result = result.unwrap_or_else(|_| {
            Err(format!(
                "no key set within {FETCH_TIMEOUT:?} from {}",
                self.first_url()
            ))
        });
        // Before the first usable set, an empty one leaves the issuer not ready (`503`, and
        // `/readyz` waits); after it, an empty one withdraws what the IdP stopped publishing.
        let result = result.and_then(|keys| match keys.is_empty() && !self.is_ready() {
            true => Err("the key set holds no usable signing key yet".to_string()),
            false => Ok(keys),
        });
        match result {
            Ok(keys) => {
                let count = keys.len();
                self.install(keys);
                self.metrics.jwks_refresh(&self.issuer.name, "ok");
                if count == 0 {
                    tracing::warn!(
                        issuer = %self.issuer.name,
                        "the key set holds no usable signing key: every token of this issuer is refused until it publishes one"
                    );
                }
                tracing::debug!(issuer = %self.issuer.name, keys = count, "key set refreshed");
                true
            }
            Err(error) => {
                self.metrics.jwks_refresh(&self.issuer.name, "error");
                tracing::warn!(
                    issuer = %self.issuer.name,
                    %error,
                    serving_last_good = self.is_ready(),
                    "key set refresh failed"
                );
                false
            }
        }
    }

    async fn fetch(&self) -> Result<Keys, String> {
        let jwks_url = match &self.issuer.keys {
            KeySource::JwksUrl(url) => url.clone(),
            KeySource::Discovery => self.timed(Endpoint::Discovery, self.discover()).await?,
            _ => return Err("not a remote key source".into()),
        };
        let document = self.timed(Endpoint::Jwks, self.get(&jwks_url)).await?;
        let document: keys::Document =
            serde_json::from_slice(&document).map_err(|e| format!("JWKS document: {e}"))?;
        // A document that parses is the IdP's word, even with no key we may use: keys it
        // stopped publishing (a pulled, compromised key) must stop verifying here too.
        Ok(Keys::from_document(&document))
    }

    /// Counts one document fetch, with its latency, in `gatehouse_idp_request_duration_seconds`.
    async fn timed<T>(
        &self,
        endpoint: Endpoint,
        fetch: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        let start = Instant::now();
        let result = fetch.await;
        let ok = result.is_ok();
        self.metrics
            .idp_request(&self.issuer.name, endpoint, ok, start.elapsed());
        result
    }

    /// OIDC Discovery §4.3: the document must name exactly the issuer we asked about, and
    /// its `jwks_uri` must be reachable under [`crate::outbound`]'s rules, on the issuer's own
    /// host or one listed in `jwks_hosts` — else whoever serves the document picks the keys.
    async fn discover(&self) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: Option<String>,
            jwks_uri: String,
        }
        let url = self.discovery_url();
        let doc: Discovery = serde_json::from_slice(&self.get(&url).await?)
            .map_err(|e| format!("discovery document: {e}"))?;
        match doc.issuer {
            None => return Err("discovery document names no issuer".into()),
            Some(i) if i != self.issuer.issuer => {
                return Err("discovery document names another issuer".into())
            }
            Some(_) => {}
        }
        let jwks: http::Uri = doc
            .jwks_uri
            .parse()
            .map_err(|_| "discovery document: jwks_uri is not a URL".to_string())?;
        let issuer: http::Uri = self
            .issuer
            .issuer
            .parse()
            .map_err(|_| "the issuer is not a URL".to_string())?;
        let (allow_http, hosts) = (self.issuer.allow_http, &self.issuer.jwks_hosts);
        crate::outbound::discovered_jwks(&issuer, &jwks, allow_http, hosts)?;
        Ok(doc.jwks_uri)
    }

    /// Where a refresh starts: the `jwks_url`, or the discovery document's URL.
    fn first_url(&self) -> String {
        match &self.issuer.keys {
            KeySource::JwksUrl(url) => crate::redact::url_for_logs(url),
            _ => crate::redact::url_for_logs(&self.discovery_url()),
        }
    }

    fn discovery_url(&self) -> String {
        let base = self.issuer.issuer.trim_end_matches('/');
        format!("{base}/.well-known/openid-configuration")
    }

    /// A document, or why not, naming the URL (for a log line: no query, no credentials).
    async fn get(&self, url: &str) -> Result<Bytes, String> {
        self.get_document(url)
            .await
            .map_err(|why| format!("GET {}: {why}", crate::redact::url_for_logs(url)))
    }

    async fn get_document(&self, url: &str) -> Result<Bytes, String> {
        let uri: http::Uri = url.parse().map_err(|_| "invalid URL".to_string())?;
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| crate::causes::chain(&e))?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES);
        Ok(body
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes())
    }
}

/// These mutexes guard plain values and are never held across an await, so a poisoned
/// lock only means another thread panicked mid-assignment; the value is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
