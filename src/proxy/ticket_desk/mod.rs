//! The ticket endpoint, answered before routing: `POST {endpoint}` with a valid token and
//! an optional `{"route": "/hubs/chat"}` gives `201 {"ticket","expires_at","expires_in"}`.
//!
//! Single-page apps call it cross-origin: CORS as in `endpoint_cors`.
//!
//! `rate_limit_per_minute` is counted per authenticated caller (issuer and subject; the
//! token itself when it names no subject), after the token validates: then 429 with
//! `Retry-After`. A request without a token is refused (401) before anything is counted or
//! verified, and an invalid token is refused (401) without touching any caller's count, so
//! anonymous floods behind a shared address cannot lock valid callers out. What bounds
//! the signature checks an invalid-token flood costs is the same as on every
//! authenticating route: `limits.requests_per_ip_per_second` and the connection limits;
//! malformed tokens and unknown issuers or kids are refused before any signature work.

mod endpoint;

use std::sync::Arc;

use serde::Deserialize;

use crate::config::{Config, TicketsConfig, TokenSource, UpstreamAuth};
use crate::metrics::Metrics;
use crate::proxy::access_log::Labels;
use crate::proxy::endpoint_cors::EndpointCors;
use crate::proxy::error::ProxyError;
use crate::secret::BearerToken;
use crate::tickets::{Grant, TicketError, TicketStore};

/// A request body larger than this is not a ticket request.
const MAX_BODY_BYTES: usize = 4096;

pub(crate) struct TicketDesk {
    pub config: TicketsConfig,
    pub store: Arc<TicketStore>,
    pub(crate) cors: EndpointCors,
    /// Some route forwards tokens upstream, so unbound tickets keep theirs.
    bearer_routes: Vec<String>,
    pub(crate) labels: Labels,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketRequest {
    route: Option<String>,
}

impl TicketDesk {
    pub(crate) fn new(
        config: &TicketsConfig,
        all: &Config,
        store: Option<Arc<TicketStore>>,
        metrics: &Metrics,
    ) -> Self {
        Self {
            // `Stores::build` makes a ticket store whenever `[tickets]` is set.
            store: store.unwrap_or_else(|| Arc::new(TicketStore::memory(config.ttl))),
            cors: EndpointCors::new(all, reads_cookies(&config.tokens)),
            bearer_routes: all
                .routes
                .iter()
                .filter(|r| r.upstream_auth == UpstreamAuth::Bearer)
                .map(|r| r.path.clone())
                .collect(),
            labels: Labels::new(&config.endpoint, all.redactor(), metrics),
            config: config.clone(),
        }
    }

    /// Redeems a ticket presented on `route`, counting the outcome.
    pub(crate) async fn redeem(
        &self,
        ticket: &BearerToken,
        route: &str,
        metrics: &Metrics,
    ) -> Result<Grant, TicketError> {
        let result = self.store.redeem(ticket, route).await;
        metrics.ticket(match &result {
            Ok(_) => "redeemed",
            Err(e) => e.reason(),
        });
        result
    }
}

/// Whether the desk reads a token from a cookie (which any site's request carries along).
fn reads_cookies(sources: &[TokenSource]) -> bool {
    sources.iter().any(|s| matches!(s, TokenSource::Cookie(_)))
}

fn parse_request(body: &[u8]) -> Result<TicketRequest, ProxyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(TicketRequest { route: None });
    }
    serde_json::from_slice(body)
        .map_err(|_| ProxyError::BadRequest("expected {\"route\": \"/path\"} or no body"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_requests_parse_strictly() {
        assert!(parse_request(b"").unwrap().route.is_none());
        assert_eq!(
            parse_request(br#"{"route":"/hubs/chat"}"#)
                .unwrap()
                .route
                .as_deref(),
            Some("/hubs/chat")
        );
        assert!(parse_request(b"{\"route\": 5}").is_err());
        assert!(parse_request(b"{\"rout\": \"/x\"}").is_err());
        assert!(parse_request(b"not json").is_err());
    }
}
