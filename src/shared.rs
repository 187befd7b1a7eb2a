//! What outlives a reload: [`Shared`] is built once at start and handed to every
//! generation: metrics, the shared stores ([`Stores`]: tickets stay redeemable, revocations
//! stay known), the rate limiters' counts, the WebSocket session tracker and the drain.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::key_board::KeyBoard;
use crate::auth::revocation::Revocations;
use crate::config::validate::StoreConfig;
use crate::config::Config;
use crate::http_client::HttpClient;
use crate::metrics::Metrics;
use crate::proxy::rate_limit::RateLimits;
use crate::proxy::service::Lasting;
use crate::redis::RedisHandle;
use crate::tickets::TicketStore;

/// State built once at start and kept across reloads.
#[derive(Clone)]
pub(crate) struct Shared {
    pub metrics: Arc<Metrics>,
    pub stores: Arc<Stores>,
    /// Counts per client and caller; each generation applies its own configured limits.
    pub rate_limits: Arc<RateLimits>,
    /// Every WebSocket session task, so the drain can wait for them.
    pub sessions: TaskTracker,
    /// Cancelled when the drain's grace period ends: open WebSockets close with 1001.
    pub websockets_drain: CancellationToken,
    /// Cancelled last: stops every generation's background work.
    pub background: CancellationToken,
    /// Fetches JWKS documents and discovery metadata.
    pub key_client: HttpClient,
    /// Records request spans when `[trace] otlp_endpoint` is set (read at start only).
    pub tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    /// The serving generation's key stores, for sessions held to the key that verified them.
    pub key_board: Arc<KeyBoard>,
}

impl Shared {
    /// The parts the request path uses.
    pub(crate) fn for_proxy(&self) -> Lasting {
        Lasting {
            metrics: self.metrics.clone(),
            revocations: self.stores.revocations.clone(),
            tickets: self.stores.tickets.clone(),
            rate_limits: self.rate_limits.clone(),
            drain: self.websockets_drain.clone(),
            sessions: self.sessions.clone(),
            tracer: self.tracer.clone(),
            key_board: self.key_board.clone(),
        }
    }
}

/// The stores of one gatehouse: revocations always, tickets when `[tickets]` is set, and
/// one Redis handle for each of them that uses Redis.
pub(crate) struct Stores {
    pub revocations: Arc<Revocations>,
    pub tickets: Option<Arc<TicketStore>>,
    handles: Vec<(&'static str, Arc<RedisHandle>)>,
}

impl Stores {
    pub(crate) fn build(config: &Config, metrics: &Arc<Metrics>) -> Result<Self, String> {
        let mut handles: Vec<(&'static str, Arc<RedisHandle>)> = Vec::new();
        let mut handle_for =
            |what: &'static str, store: &StoreConfig| -> Result<Option<Arc<RedisHandle>>, String> {
                let StoreConfig::Redis(url) = store else {
                    return Ok(None);
                };
                let handle = Arc::new(RedisHandle::new(what, url)?);
                handles.push((what, handle.clone()));
                Ok(Some(handle))
            };
        let redis = handle_for("revocation", &config.revocation.store)?;
        let revocations = Arc::new(Revocations::new(
            config.revocation.clone(),
            redis,
            metrics.clone(),
        ));
        let tickets = match &config.tickets {
            None => None,
            Some(t) => Some(Arc::new(match handle_for("tickets", &t.store)? {
                Some(handle) => TicketStore::redis(handle, t.ttl),
                None => TicketStore::memory(t.ttl),
            })),
        };
        Ok(Self {
            revocations,
            tickets,
            handles,
        })
    }

    /// Health pings, the revocation feed and the ticket sweep, until `stop`.
    pub(crate) fn spawn(&self, stop: &CancellationToken) {
        for (_, handle) in &self.handles {
            tokio::spawn(handle.clone().keep_checking(stop.clone()));
        }
        tokio::spawn(self.revocations.clone().run(stop.clone()));
        if let Some(tickets) = &self.tickets {
            tokio::spawn(crate::tickets::sweep(tickets.clone(), stop.clone()));
        }
    }

    /// For `/readyz`: every Redis store answered recently.
    pub(crate) fn unhealthy(&self) -> Vec<&'static str> {
        self.handles
            .iter()
            .filter(|(_, h)| !h.is_healthy())
            .map(|(what, _)| *what)
            .collect()
    }

    /// Each Redis store by name, and whether it answered recently (`gatehouse_store_up`).
    pub(crate) fn health(&self) -> impl Iterator<Item = (&'static str, bool)> + '_ {
        self.handles.iter().map(|(what, h)| (*what, h.is_healthy()))
    }
}
