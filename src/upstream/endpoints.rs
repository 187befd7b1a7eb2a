//! The endpoints of one route and what each knows about itself: its authority, its seal tag,
//! how many requests and WebSockets it has outstanding, and whether it is ejected.
//!
//! The set is swapped whole (discovery replaces it), while an endpoint that stays keeps its
//! counters: requests already in flight hold an `Arc` to the endpoint they went to.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::uri::{Authority, Scheme};
use http::HeaderValue;

use super::affinity::Tag;
use super::multiplex::Multiplexed;
use super::pool::Idle;

/// First ejection; each further consecutive failure doubles it, up to [`MAX_EJECTION`].
const BASE_EJECTION: Duration = Duration::from_secs(5);
const MAX_EJECTION: Duration = Duration::from_secs(60);

pub(crate) struct Endpoint {
    pub(crate) authority: Authority,
    /// The seal tag that names this endpoint in a connection token.
    pub(crate) tag: Tag,
    outstanding: AtomicUsize,
    /// Milliseconds since the pool's epoch until which the endpoint is skipped; 0 = never.
    ejected_until: AtomicU64,
    failures: AtomicU32,
    /// Idle connections to this endpoint: they go when the endpoint leaves the set.
    pub(crate) idle: Arc<Idle>,
    /// HTTP/2 connections to this endpoint (`upstream_http2`); they close with it too.
    pub(crate) h2: Arc<Multiplexed>,
    /// `Host` for a request to this endpoint, made once.
    host: OnceLock<Option<HeaderValue>>,
}

impl Endpoint {
    pub(crate) fn new(authority: Authority, tag: Tag) -> Self {
        Self {
            authority,
            tag,
            outstanding: AtomicUsize::new(0),
            ejected_until: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            idle: Arc::default(),
            h2: Arc::default(),
            host: OnceLock::new(),
        }
    }

    /// `Host` for this endpoint: its host, and its port unless the scheme's default.
    pub(crate) fn host(&self, default_port: u16) -> Option<HeaderValue> {
        self.host
            .get_or_init(|| {
                let host = self.authority.host();
                match self.authority.port_u16() {
                    Some(port) if port != default_port => {
                        HeaderValue::from_str(&format!("{host}:{port}")).ok()
                    }
                    _ => HeaderValue::from_str(host).ok(),
                }
            })
            .clone()
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }
}

/// Counts one request (until its response body ends) or one WebSocket (until it closes)
/// as outstanding on its endpoint.
pub(crate) struct InFlight(Arc<Endpoint>);

impl InFlight {
    pub(crate) fn start(endpoint: Arc<Endpoint>) -> Self {
        endpoint.outstanding.fetch_add(1, Ordering::Relaxed);
        Self(endpoint)
    }

    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One route's endpoints.
pub(crate) struct Pool {
    pub(crate) scheme: Scheme,
    /// For discovered endpoints: the configured `name:port`, sent as `Host` so the upstream
    /// sees the name it is known by and not a pod address.
    pub(crate) host: Option<HeaderValue>,
    set: ArcSwap<Vec<Arc<Endpoint>>>,
    epoch: Instant,
    ejections: Option<prometheus::IntCounter>,
}

impl Pool {
    pub(crate) fn new(scheme: Scheme, host: Option<HeaderValue>, set: Vec<Arc<Endpoint>>) -> Self {
        Self {
            scheme,
            host,
            set: ArcSwap::from_pointee(set),
            epoch: Instant::now(),
            ejections: None,
        }
    }

    /// Counts every ejection in `counter` (`gatehouse_upstream_ejections_total`).
    pub(crate) fn counting(mut self, counter: prometheus::IntCounter) -> Self {
        self.ejections = Some(counter);
        self
    }

    pub(crate) fn endpoints(&self) -> arc_swap::Guard<Arc<Vec<Arc<Endpoint>>>> {
        self.set.load()
    }

    /// Replaces the set by these authorities, keeping the endpoints (and their counters and
    /// ejections) that stay. An empty answer keeps the old set: a DNS hiccup must not empty
    /// a route that still has live endpoints.
    pub(crate) fn replace(&self, authorities: Vec<Authority>, tag: impl Fn(&Authority) -> Tag) {
        if authorities.is_empty() {
            return;
        }
        let old = self.set.load();
        let next: Vec<Arc<Endpoint>> = authorities
            .into_iter()
            .map(|a| match old.iter().find(|e| e.authority == a) {
                Some(kept) => kept.clone(),
                None => Arc::new(Endpoint::new(a.clone(), tag(&a))),
            })
            .collect();
        let same =
            next.len() == old.len() && next.iter().zip(old.iter()).all(|(a, b)| Arc::ptr_eq(a, b));
        if !same {
            self.set.store(Arc::new(next));
        }
    }

    /// Milliseconds since the pool was made: the clock of `ejected_until`.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    #[cfg(test)]
    pub(crate) fn is_ejected(&self, endpoint: &Endpoint) -> bool {
        self.is_ejected_at(endpoint, self.now_ms())
    }

    pub(crate) fn is_ejected_at(&self, endpoint: &Endpoint, now_ms: u64) -> bool {
        endpoint.ejected_until.load(Ordering::Relaxed) > now_ms
    }

    /// Passive health: the endpoint refused a connection (or did not accept one in time).
    pub(crate) fn eject(&self, endpoint: &Endpoint) {
        let failures = endpoint.failures.fetch_add(1, Ordering::Relaxed).min(16);
        let backoff = BASE_EJECTION
            .saturating_mul(1 << failures.min(5))
            .min(MAX_EJECTION);
        let until = self.now_ms().saturating_add(backoff.as_millis() as u64);
        endpoint.ejected_until.store(until, Ordering::Relaxed);
        if let Some(counter) = &self.ejections {
            counter.inc();
        }
        tracing::warn!(
            endpoint = %endpoint.authority,
            backoff_ms = backoff.as_millis() as u64,
            "upstream endpoint refused a connection; ejected"
        );
    }

    /// The endpoint answered: its failure streak ends.
    pub(crate) fn answered(&self, endpoint: &Endpoint) {
        if endpoint.failures.load(Ordering::Relaxed) != 0 {
            endpoint.failures.store(0, Ordering::Relaxed);
            endpoint.ejected_until.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(names: &[&str]) -> Pool {
        let set = names
            .iter()
            .map(|n| Arc::new(Endpoint::new(n.parse().unwrap(), [0; 6])))
            .collect();
        Pool::new(Scheme::HTTP, None, set)
    }

    #[test]
    fn in_flight_counts_until_dropped() {
        let p = pool(&["a:1"]);
        let e = p.endpoints()[0].clone();
        let one = InFlight::start(e.clone());
        let two = InFlight::start(e.clone());
        assert_eq!(e.outstanding(), 2);
        drop(one);
        assert_eq!(e.outstanding(), 1);
        drop(two);
        assert_eq!(e.outstanding(), 0);
    }

    #[test]
    fn replacing_keeps_endpoints_that_stay_and_ignores_empty_answers() {
        let p = pool(&["a:1", "b:1"]);
        let b = p.endpoints()[1].clone();
        let _held = InFlight::start(b.clone());
        p.replace(vec!["b:1".parse().unwrap(), "c:1".parse().unwrap()], |_| {
            [1; 6]
        });
        let now = p.endpoints();
        assert!(Arc::ptr_eq(&now[0], &b));
        assert_eq!(now[0].outstanding(), 1);
        assert_eq!(now[1].authority, "c:1");
        p.replace(Vec::new(), |_| [1; 6]);
        assert_eq!(p.endpoints().len(), 2);
    }

    #[test]
    fn ejection_lasts_until_the_endpoint_answers() {
        let p = pool(&["a:1"]);
        let e = p.endpoints()[0].clone();
        assert!(!p.is_ejected(&e));
        p.eject(&e);
        assert!(p.is_ejected(&e));
        p.answered(&e);
        assert!(!p.is_ejected(&e));
    }
}
