//! Building the registry: one helper per metric kind (each registers what it makes),
//! the label sets that must stay bounded, and the series every build carries.

use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Seconds: from half a millisecond (a cached token) to 30 s (a route's default timeout).
const BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A labelled family: name (after the `gatehouse_` prefix), help, label names.
pub(super) type Def = (&'static str, &'static str, &'static [&'static str]);

pub(super) const REQUESTS: Def = (
    "requests_total",
    "Requests answered, by route, method and status code",
    &["route", "method", "code"],
);
pub(super) const DURATION: Def = (
    "request_duration_seconds",
    "Time to response headers, by route",
    &["route"],
);
pub(super) const UPSTREAM_DURATION: Def = (
    "upstream_duration_seconds",
    "Time from sending a request upstream to its response headers, by route",
    &["route"],
);
pub(super) const AUTH_FAILURES: Def = (
    "auth_failures_total",
    "Requests refused by authentication or policy, by reason",
    &["reason"],
);
pub(super) const UPSTREAM_ERRORS: Def = (
    "upstream_errors_total",
    "Upstream failures, by route and kind (connect: no connection made)",
    &["route", "kind"],
);
pub(super) const UPSTREAM_EJECTIONS: Def = (
    "upstream_ejections_total",
    "Upstream endpoints ejected for refusing a connection, by route",
    &["route"],
);
pub(super) const CORS_PREFLIGHTS: Def = (
    "cors_preflights_total",
    "CORS preflights, by route and result (passed, answered, refused, upstream_failed)",
    &["route", "result"],
);
pub(super) const JWKS_REFRESHES: Def = (
    "jwks_refresh_total",
    "Key set fetches, by issuer and result",
    &["issuer", "result"],
);
pub(super) const JWKS_AGE: Def = (
    "jwks_last_success_age_seconds",
    "Seconds since the issuer's last good key set",
    &["issuer"],
);
pub(super) const IDP_REQUESTS: Def = (
    "idp_request_duration_seconds",
    "Discovery, JWKS and introspection requests, by issuer, endpoint and result",
    &["issuer", "endpoint", "result"],
);
pub(super) const CERTIFICATE_EXPIRY: Def = (
    "certificate_expiry_timestamp_seconds",
    "notAfter of each certificate gatehouse serves, as Unix seconds",
    &["certificate"],
);
pub(super) const UPGRADES: Def = (
    "websocket_upgrades_total",
    "WebSocket upgrade attempts, by route and result",
    &["route", "result"],
);
pub(super) const WEBSOCKET_CLOSES: Def = (
    "websocket_closes_total",
    "Ended WebSocket sessions, by route and reason",
    &["route", "reason"],
);
pub(super) const STREAM_CUTS: Def = (
    "stream_cuts_total",
    "Streamed responses cut because their token expired or was revoked, by route and reason",
    &["route", "reason"],
);
pub(super) const TICKETS: Def = (
    "tickets_total",
    "Tickets issued, redeemed and rejected (by reason)",
    &["result"],
);
pub(super) const STORE_ERRORS: Def = (
    "store_errors_total",
    "Checks or writes that found the shared store unavailable, by store",
    &["store"],
);
pub(super) const LIMIT_HITS: Def = (
    "limit_hits_total",
    "Connections or requests turned away or cut by a limit, by limit",
    &["limit"],
);
pub(super) const RELOADS: Def = (
    "config_reloads_total",
    "Config reloads, by result (ok, error)",
    &["result"],
);
pub(super) const TOKEN_CACHE: Def = (
    "token_cache_total",
    "Validated-token cache lookups, by result",
    &["result"],
);

/// The method as a label: the nine methods of RFC 9110 and RFC 5789 as they are, any
/// other token as `OTHER`, so a client cannot mint label values.
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::CONNECT => "CONNECT",
        M::OPTIONS => "OPTIONS",
        M::TRACE => "TRACE",
        M::PATCH => "PATCH",
        _ => "OTHER",
    }
}

pub(super) struct Families<'a> {
    registry: &'a Registry,
}

impl<'a> Families<'a> {
    pub(super) fn new(registry: &'a Registry) -> Self {
        Self { registry }
    }

    fn register<C: prometheus::core::Collector + Clone + 'static>(
        &self,
        c: C,
    ) -> Result<C, prometheus::Error> {
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    pub(super) fn counter(
        &self,
        (name, help, labels): Def,
    ) -> Result<IntCounterVec, prometheus::Error> {
        self.register(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    pub(super) fn histogram(
        &self,
        (name, help, labels): Def,
    ) -> Result<HistogramVec, prometheus::Error> {
        let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
        self.register(HistogramVec::new(opts, labels)?)
    }

    pub(super) fn gauge(&self, (name, help, labels): Def) -> Result<GaugeVec, prometheus::Error> {
        self.register(GaugeVec::new(Opts::new(name, help), labels)?)
    }

    pub(super) fn int_counter(
        &self,
        name: &str,
        help: &str,
    ) -> Result<prometheus::IntCounter, prometheus::Error> {
        self.register(prometheus::IntCounter::new(name, help)?)
    }

    pub(super) fn int_gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        self.register(IntGauge::new(name, help)?)
    }

    pub(super) fn int_gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, prometheus::Error> {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }
}

/// `gatehouse_build_info{version,commit} 1`, the usual join target for "which build is this".
pub(super) fn build_info(
    registry: &Registry,
    version: &str,
    commit: &str,
) -> Result<(), prometheus::Error> {
    let opts = Opts::new("build_info", "1, labelled with the running build")
        .const_label("version", version)
        .const_label("commit", commit);
    let gauge = Gauge::with_opts(opts)?;
    gauge.set(1.0);
    registry.register(Box::new(gauge))
}

/// The standard `process_*` series (CPU, memory, file descriptors, start time), read from
/// /proc; other systems have no /proc and get none.
pub(super) fn process_collector(registry: &Registry) -> Result<(), prometheus::Error> {
    #[cfg(target_os = "linux")]
    registry.register(Box::new(super::process::ProcessMetrics::for_self()?))?;
    #[cfg(not(target_os = "linux"))]
    let _ = registry;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_fold_to_other() {
        assert_eq!(method_label(&http::Method::PATCH), "PATCH");
        let odd = http::Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(method_label(&odd), "OTHER");
        let lower = http::Method::from_bytes(b"get").unwrap();
        assert_eq!(method_label(&lower), "OTHER");
    }
}
