//! Prometheus metrics. Labels are route paths, issuer names, status classes and fixed
//! reason codes; nothing that comes from a token or a request line ever becomes a label,
//! so neither secrets nor unbounded cardinality can reach the registry.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    auth_failures: IntCounterVec,
    upstream_errors: IntCounterVec,
    upstream_ejections: IntCounterVec,
    jwks_refreshes: IntCounterVec,
    jwks_age: prometheus::GaugeVec,
    connections: IntGauge,
    token_cache_hit: IntCounter,
    token_cache_miss: IntCounter,
    websockets_open: IntGaugeVec,
    upgrades: IntCounterVec,
    websocket_closes: IntCounterVec,
    tickets: IntCounterVec,
    store_errors: IntCounterVec,
    limit_hits: IntCounterVec,
    reloads: IntCounterVec,
    reload_ok: IntGauge,
    cors_preflights: IntCounterVec,
    store_up: IntGaugeVec,
}

/// Per-route handles, resolved once so the request path does no label lookups.
#[derive(Clone)]
pub struct RouteMetrics {
    by_class: [IntCounter; 5],
    duration: Histogram,
}

impl RouteMetrics {
    pub fn observe(&self, status: http::StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("gatehouse".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Requests answered, by route and status class",
            ),
            &["route", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time to response headers, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "auth_failures_total",
                "Requests refused by authentication or policy, by reason",
            ),
            &["reason"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "upstream_errors_total",
                "Upstream failures, by route and kind",
            ),
            &["route", "kind"],
        )?;
        let upstream_ejections = IntCounterVec::new(
            Opts::new(
                "upstream_ejections_total",
                "Upstream endpoints ejected for refusing a connection, by route",
            ),
            &["route"],
        )?;
        let jwks_refreshes = IntCounterVec::new(
            Opts::new(
                "jwks_refresh_total",
                "Key set fetches, by issuer and result",
            ),
            &["issuer", "result"],
        )?;
        let jwks_age = prometheus::GaugeVec::new(
            Opts::new(
                "jwks_last_success_age_seconds",
                "Seconds since the issuer's last good key set",
            ),
            &["issuer"],
        )?;
        let connections = IntGauge::new(
            "connections_open",
            "Client connections open on the public listener",
        )?;
        let token_cache = IntCounterVec::new(
            Opts::new(
                "token_cache_total",
                "Validated-token cache lookups, by result",
            ),
            &["result"],
        )?;
        let websockets_open = IntGaugeVec::new(
            Opts::new(
                "websockets_open",
                "WebSocket sessions being relayed, by route",
            ),
            &["route"],
        )?;
        let upgrades = IntCounterVec::new(
            Opts::new(
                "websocket_upgrades_total",
                "WebSocket upgrade attempts, by route and result",
            ),
            &["route", "result"],
        )?;
        let websocket_closes = IntCounterVec::new(
            Opts::new(
                "websocket_closes_total",
                "Ended WebSocket sessions, by route and reason",
            ),
            &["route", "reason"],
        )?;
        let tickets = IntCounterVec::new(
            Opts::new(
                "tickets_total",
                "Tickets issued, redeemed and rejected (by reason)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(websockets_open.clone()))?;
        registry.register(Box::new(upgrades.clone()))?;
        registry.register(Box::new(websocket_closes.clone()))?;
        let store_errors = IntCounterVec::new(
            Opts::new(
                "store_errors_total",
                "Checks or writes that found the shared store unavailable, by store",
            ),
            &["store"],
        )?;
        let limit_hits = IntCounterVec::new(
            Opts::new(
                "limit_hits_total",
                "Connections or requests turned away or cut by a limit, by limit",
            ),
            &["limit"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "config_reloads_total",
                "Config reloads, by result (ok, error)",
            ),
            &["result"],
        )?;
        let reload_ok = IntGauge::new(
            "config_last_reload_successful",
            "1 when the last config reload (or the start) succeeded, else 0",
        )?;
        reload_ok.set(1);
        let cors_preflights = IntCounterVec::new(
            Opts::new(
                "cors_preflights_total",
                "CORS preflights, by route and result (passed, answered, refused, upstream_failed)",
            ),
            &["route", "result"],
        )?;
        let store_up = IntGaugeVec::new(
            Opts::new(
                "store_up",
                "1 while a Redis store answered its last health ping in time, else 0",
            ),
            &["store"],
        )?;
        registry.register(Box::new(cors_preflights.clone()))?;
        registry.register(Box::new(store_up.clone()))?;
        registry.register(Box::new(limit_hits.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(reload_ok.clone()))?;
        registry.register(Box::new(tickets.clone()))?;
        registry.register(Box::new(store_errors.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(upstream_ejections.clone()))?;
        registry.register(Box::new(jwks_refreshes.clone()))?;
        registry.register(Box::new(jwks_age.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(token_cache.clone()))?;
        Ok(Self {
            registry,
            requests,
            duration,
            auth_failures,
            upstream_errors,
            upstream_ejections,
            jwks_refreshes,
            jwks_age,
            connections,
            token_cache_hit: token_cache.with_label_values(&["hit"]),
            token_cache_miss: token_cache.with_label_values(&["miss"]),
            websockets_open,
            upgrades,
            websocket_closes,
            tickets,
            store_errors,
            limit_hits,
            reloads,
            reload_ok,
            cors_preflights,
            store_up,
        })
    }

    pub fn route(&self, route: &str) -> RouteMetrics {
        let class = |c: &str| self.requests.with_label_values(&[route, c]);
        RouteMetrics {
            by_class: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            duration: self.duration.with_label_values(&[route]),
        }
    }

    /// Counts `route`'s endpoints ejected by passive health.
    pub fn upstream_ejections(&self, route: &str) -> IntCounter {
        self.upstream_ejections.with_label_values(&[route])
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

    pub fn upgrade(&self, route: &str, result: &'static str) {
        self.upgrades.with_label_values(&[route, result]).inc();
    }

    pub fn websocket_closed(&self, route: &str, reason: &'static str) {
        self.websocket_closes
            .with_label_values(&[route, reason])
            .inc();
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
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}
