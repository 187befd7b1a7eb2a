//! A generation of configuration: everything a reload replaces, built from one `Config`.
//!
//! The listener reads the current generation once per accepted connection (its limits and
//! HTTP settings) and once per request (routes, issuers, policies, rate limits), so a swap
//! is atomic for new requests. A request or WebSocket session already under way holds an
//! `Arc` to the generation it started in and finishes there.
//!
//! What outlives generations is [`Shared`](crate::shared::Shared): metrics, the shared stores (tickets stay
//! redeemable, revocations stay known), the rate limiters' counts, the WebSocket session
//! tracker and the drain.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio_util::sync::CancellationToken;

use crate::auth::introspect::Introspector;
use crate::auth::jwks::KeyStore;
use crate::auth::validate::Validator;
use crate::config::{Config, IssuerConfig, KeySource};
use crate::proxy::service::Proxy;
use crate::shared::Shared;

/// The generation serving new requests.
pub(crate) type Current = Arc<ArcSwap<Generation>>;

pub(crate) struct Generation {
    pub config: Config,
    pub proxy: Arc<Proxy>,
    /// HTTP/1.1 + HTTP/2 server settings for connections accepted under this generation.
    pub http: Arc<auto::Builder<TokioExecutor>>,
    pub key_stores: Vec<Arc<KeyStore>>,
    /// Stops this generation's key refresh once a newer generation replaces it.
    refresh: CancellationToken,
}

impl Generation {
    /// Builds a generation; with `previous`, remote key sets it already holds are carried
    /// over, so a reload never leaves an issuer without keys while it refetches.
    pub(crate) fn build(
        config: Config,
        shared: &Shared,
        previous: Option<&Generation>,
    ) -> Result<Self, String> {
        let refresh = shared.background.child_token();
        let key_stores: Vec<Arc<KeyStore>> = config
            .issuers
            .iter()
            .map(|issuer| {
                let store = KeyStore::new(
                    issuer.clone(),
                    shared.key_client.clone(),
                    shared.metrics.clone(),
                );
                if let Some(old) = previous.and_then(|p| p.remote_store_like(issuer)) {
                    store.seed(old);
                }
                store
            })
            .collect();
        let introspector = Introspector::new(&config.introspections, shared.metrics.clone())?;
        let validator = Validator::new(
            key_stores.clone(),
            introspector,
            config.token_cache_entries,
            shared.metrics.clone(),
        );
        let proxy = Arc::new(Proxy::new(&config, validator, shared.for_proxy())?);
        for store in &key_stores {
            tokio::spawn(store.clone().run_refresh(refresh.clone()));
        }
        Ok(Self {
            http: Arc::new(http_builder(&config)),
            config,
            proxy,
            key_stores,
            refresh,
        })
    }

    /// A remote key store of ours fetching from the same place as `issuer`.
    fn remote_store_like(&self, issuer: &IssuerConfig) -> Option<&KeyStore> {
        self.key_stores
            .iter()
            .map(Arc::as_ref)
            .find(|s| same_remote_source(s.issuer(), issuer))
    }

    /// Waits (up to `within`) for issuers whose keys are fetched to have some.
    pub(crate) async fn keys_ready(&self, within: Duration) -> bool {
        let all_ready = || self.key_stores.iter().all(|s| s.is_ready());
        tokio::time::timeout(within, async {
            while !all_ready() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .is_ok()
    }

    /// Called once this generation no longer serves new requests.
    pub(crate) fn retire(&self) {
        self.refresh.cancel();
    }
}

/// Builds the HTTP/1.1 + HTTP/2 server settings; every connection of a generation shares them.
pub(crate) fn http_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Ours (activity.rs) starts at the first byte of a head, not when hyper starts
        // waiting for one, so idle keep-alive connections get `idle_timeout` instead.
        .header_read_timeout(None)
        // A head larger than the read buffer is answered 431 by hyper.
        .max_buf_size(config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

fn same_remote_source(a: &IssuerConfig, b: &IssuerConfig) -> bool {
    match (&a.keys, &b.keys) {
        (KeySource::Discovery, KeySource::Discovery) => a.issuer == b.issuer,
        (KeySource::JwksUrl(x), KeySource::JwksUrl(y)) => x == y,
        _ => false,
    }
}
