//! Prometheus metrics. Labels are route paths, issuer names, status codes, methods from a
//! fixed list and fixed reason codes; nothing that comes from a token or a request line
//! ever becomes a label as it was sent, so neither secrets nor unbounded cardinality can
//! reach the registry. The `process_*` series live in a second, unprefixed registry.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Registry, TextEncoder,
};

#[cfg(target_os = "linux")]
mod process;
mod registry;

use registry::*;

pub use registry::method_label;

/// The commit gatehouse was built from, when the build knew it.
pub const COMMIT: &str = match option_env!("GATEHOUSE_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

/// Every `result` of `gatehouse_websocket_upgrades_total`.
pub const UPGRADE_RESULTS: [&str; 8] = [
    "ok",
    "refused",
    "origin_not_allowed",
    "upstream_refused",
    "bad_subprotocol",
    "upgrade_failed",
    "auth_failed",
    "pre_auth_budget",
];

pub struct Metrics {
    registry: Registry,
    /// Mirrors [`LOG_LINES_DROPPED`] when rendered.
    log_lines_dropped: prometheus::IntCounter,
    /// `process_*`: outside the `gatehouse_` prefix, where dashboards look for them.
    process: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_duration: HistogramVec,
    auth_failures: IntCounterVec,
    upstream_errors: IntCounterVec,
    upstream_ejections: IntCounterVec,
    jwks_refreshes: IntCounterVec,
    jwks_age: GaugeVec,
    idp_requests: HistogramVec,
    certificate_expiry: GaugeVec,
    connections: IntGauge,
    token_cache_hit: IntCounter,
    token_cache_miss: IntCounter,
    websockets_open: IntGaugeVec,
    upgrades: IntCounterVec,
    websocket_closes: IntCounterVec,
    stream_cuts: IntCounterVec,
    tickets: IntCounterVec,
    store_errors: IntCounterVec,
    limit_hits: IntCounterVec,
    reloads: IntCounterVec,
    reload_ok: IntGauge,
    cors_preflights: IntCounterVec,
    store_up: IntGaugeVec,
}

/// Per-route handles: the histograms are resolved once; the request counter is looked up
/// by method and status code, both from bounded sets.
#[derive(Clone)]
pub struct RouteMetrics {
    route: Arc<str>,
    requests: IntCounterVec,
    duration: Histogram,
    upstream: Histogram,
}

impl RouteMetrics {
    pub fn observe(&self, method: &http::Method, status: http::StatusCode, elapsed: Duration) {
        self.requests
            .with_label_values(&[&*self.route, method_label(method), status.as_str()])
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Time from sending the request upstream to its response headers.
    pub fn upstream(&self, elapsed: Duration) {
        self.upstream.observe(elapsed.as_secs_f64());
    }
}

/// Which identity-provider document a fetch was for.
#[derive(Debug, Clone, Copy)]
pub enum IdpEndpoint {
    Discovery,
    Jwks,
    Introspection,
}

impl IdpEndpoint {
    fn label(self) -> &'static str {
        match self {
            Self::Discovery => "discovery",
            Self::Jwks => "jwks",
            Self::Introspection => "introspection",
        }
    }
}

/// Log lines the writer thread had no room for (`app::logging`), process-wide: logging
/// starts before any registry exists.
static LOG_LINES_DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts one dropped log line.
pub fn count_dropped_log_line() {
    LOG_LINES_DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Log lines dropped so far in this process.
pub fn dropped_log_lines() -> u64 {
    LOG_LINES_DROPPED.load(std::sync::atomic::Ordering::Relaxed)
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("gatehouse".into()), None)?;
        let process = Registry::new();
        registry::process_collector(&process)?;
        registry::build_info(&registry, env!("CARGO_PKG_VERSION"), COMMIT)?;
        let r = registry::Families::new(&registry);
        let token_cache = r.counter(TOKEN_CACHE)?;
        Ok(Self {
            requests: r.counter(REQUESTS)?,
            duration: r.histogram(DURATION)?,
            upstream_duration: r.histogram(UPSTREAM_DURATION)?,
            auth_failures: r.counter(AUTH_FAILURES)?,
            upstream_errors: r.counter(UPSTREAM_ERRORS)?,
            upstream_ejections: r.counter(UPSTREAM_EJECTIONS)?,
            jwks_refreshes: r.counter(JWKS_REFRESHES)?,
            jwks_age: r.gauge(JWKS_AGE)?,
            idp_requests: r.histogram(IDP_REQUESTS)?,
            certificate_expiry: r.gauge(CERTIFICATE_EXPIRY)?,
            connections: r.int_gauge(
                "connections_open",
                "Client connections open on the public listener",
            )?,
            token_cache_hit: token_cache.with_label_values(&["hit"]),
            token_cache_miss: token_cache.with_label_values(&["miss"]),
            websockets_open: r.int_gauge_vec(
                "websockets_open",
                "WebSocket sessions being relayed, by route",
                &["route"],
            )?,
            upgrades: r.counter(UPGRADES)?,
            websocket_closes: r.counter(WEBSOCKET_CLOSES)?,
            stream_cuts: r.counter(STREAM_CUTS)?,
            tickets: r.counter(TICKETS)?,
            store_errors: r.counter(STORE_ERRORS)?,
            limit_hits: r.counter(LIMIT_HITS)?,
            reloads: r.counter(RELOADS)?,
            reload_ok: {
                let g = r.int_gauge(
                    "config_last_reload_successful",
                    "1 when the last config reload (or the start) succeeded, else 0",
                )?;
                g.set(1);
                g
            },
            cors_preflights: r.counter(CORS_PREFLIGHTS)?,
            store_up: r.int_gauge_vec(
                "store_up",
                "1 while a Redis store answered its last health ping in time, else 0",
                &["store"],
            )?,
            log_lines_dropped: r.int_counter(
                "log_lines_dropped_total",
                "Log lines dropped because the log writer fell behind (stdout slow or blocked)",
            )?,
            registry,
            process,
        })
    }

    pub fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            route: Arc::from(route),
            requests: self.requests.clone(),
            duration: self.duration.with_label_values(&[route]),
            upstream: self.upstream_duration.with_label_values(&[route]),
        }
    }

    /// Counts `route`'s endpoints ejected by passive health.
    pub fn upstream_ejections(&self, route: &str) -> IntCounter {
        self.upstream_ejections.with_label_values(&[route])
    }

    /// One discovery, JWKS or introspection request and how long it took.
    pub fn idp_request(&self, issuer: &str, endpoint: IdpEndpoint, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.idp_requests
            .with_label_values(&[issuer, endpoint.label(), result])
            .observe(took.as_secs_f64());
    }

    /// The `notAfter` of a served certificate, as Unix seconds.
    pub fn certificate_expiry(&self, certificate: &str, not_after_unix: i64) {
        self.certificate_expiry
            .with_label_values(&[certificate])
            .set(not_after_unix as f64);
    }

    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    pub fn upstream_error(&self, route: &str, kind: &'static str) {
        self.upstream_errors.with_label_values(&[route, kind]).inc();
    }

    pub fn jwks_refresh(&self, issuer: &str, result: &'static str) {
        self.jwks_refreshes
            .with_label_values(&[issuer, result])
            .inc();
    }

    pub fn set_key_age(&self, issuer: &str, age: Option<Duration>) {
        // No key set yet: report -1 so "never loaded" differs from "just loaded".
        let secs = age.map_or(-1.0, |a| a.as_secs_f64());
        self.jwks_age.with_label_values(&[issuer]).set(secs);
    }

    pub fn connections(&self) -> &IntGauge {
        &self.connections
    }

    /// Open-session gauge for a route; the caller increments and decrements it.
    pub fn websockets_open(&self, route: &str) -> IntGauge {
        self.websockets_open.with_label_values(&[route])
    }

    /// `result` is one of [`UPGRADE_RESULTS`], the values the README documents.
    pub fn upgrade(&self, route: &str, result: &'static str) {
        debug_assert!(UPGRADE_RESULTS.contains(&result), "{result}");
        self.upgrades.with_label_values(&[route, result]).inc();
    }

    pub fn websocket_closed(&self, route: &str, reason: &'static str) {
        self.websocket_closes
            .with_label_values(&[route, reason])
            .inc();
    }

    /// A streamed response cut at its token's end: `token_expired` or `token_revoked`.
    pub fn stream_cut(&self, route: &str, reason: &'static str) {
        self.stream_cuts.with_label_values(&[route, reason]).inc();
    }

    /// `issued`, `redeemed`, or a rejection reason code.
    pub fn ticket(&self, result: &'static str) {
        self.tickets.with_label_values(&[result]).inc();
    }

    /// `passed` upstream, `answered` by gatehouse, or `refused` (origin not listed).
    pub fn cors_preflight(&self, route: &str, result: &'static str) {
        self.cors_preflights
            .with_label_values(&[route, result])
            .inc();
    }

    pub fn set_store_up(&self, store: &'static str, up: bool) {
        self.store_up.with_label_values(&[store]).set(i64::from(up));
    }

    pub fn store_error(&self, store: &'static str) {
        self.store_errors.with_label_values(&[store]).inc();
    }

    /// A limit turned something away; `limit` is its label (`max_connections`, `max_body_bytes`...).
    pub fn limit_hit(&self, limit: &'static str) {
        self.limit_hits.with_label_values(&[limit]).inc();
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.with_label_values(&[result]).inc();
        self.reload_ok.set(i64::from(ok));
    }

    pub fn token_cache(&self, hit: bool) {
        if hit {
            self.token_cache_hit.inc();
        } else {
            self.token_cache_miss.inc();
        }
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let dropped = dropped_log_lines();
        self.log_lines_dropped
            .inc_by(dropped.saturating_sub(self.log_lines_dropped.get()));
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}
