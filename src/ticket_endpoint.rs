//! The ticket endpoint, answered before routing: `POST {endpoint}` with a valid token and
//! an optional `{"route": "/hubs/chat"}` gives `201 {"ticket","expires_at","expires_in"}`.
//!
//! Single-page apps call it cross-origin, so it answers CORS preflights for the origins the
//! routes allow. When any route lists origins, a request whose `Origin` is not among them is
//! refused (403); with no list anywhere, CORS headers are simply not sent.
//!
//! `rate_limit_per_minute` is counted per authenticated caller (issuer and subject; the
//! token itself when it names no subject), after the token validates: then 429 with
//! `Retry-After`. A request without a token is refused (401) before anything is counted or
//! verified, and an invalid token is refused (401) without touching any caller's count, so
//! anonymous floods behind a shared address cannot lock valid callers out. What bounds
//! the signature checks an invalid-token flood costs is the same as on every
//! authenticating route: `limits.requests_per_ip_per_second` and the connection limits;
//! malformed tokens and unknown issuers or kids are refused before any signature work.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::access_log::AccessLine;
use crate::body::{empty, Body};
use crate::config::{Config, TicketsConfig, UpstreamAuth};
use crate::error::{AuthError, ProxyError};
use crate::metrics::{Metrics, RouteMetrics};
use crate::policy;
use crate::pre_auth::BodyError;
use crate::redact::Redactor;
use crate::secret::BearerToken;
use crate::service::Proxy;
use crate::store::Stores;
use crate::tickets::{Grant, TicketError, TicketStore};
use crate::token;
use crate::validate::Claims;

/// A request body larger than this is not a ticket request.
const MAX_BODY_BYTES: usize = 4096;

pub struct TicketDesk {
    pub config: TicketsConfig,
    pub store: Arc<TicketStore>,
    /// Union of the routes' `allowed_origins`.
    origins: Vec<String>,
    /// Some route forwards tokens upstream, so unbound tickets keep theirs.
    bearer_routes: Vec<String>,
    pub(crate) name: Arc<str>,
    pub(crate) redactor: Redactor,
    pub(crate) metrics: RouteMetrics,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketRequest {
    route: Option<String>,
}

impl TicketDesk {
    pub fn new(config: &TicketsConfig, all: &Config, stores: &Stores, metrics: &Metrics) -> Self {
        let mut origins: Vec<String> = all
            .routes
            .iter()
            .flat_map(|r| r.allowed_origins.clone())
            .collect();
        origins.sort();
        origins.dedup();
        Self {
            // `Stores::build` makes a ticket store whenever `[tickets]` is set.
            store: stores
                .tickets
                .clone()
                .unwrap_or_else(|| Arc::new(TicketStore::memory(config.ttl))),
            origins,
            bearer_routes: all
                .routes
                .iter()
                .filter(|r| r.upstream_auth == UpstreamAuth::Bearer)
                .map(|r| r.path.clone())
                .collect(),
            name: Arc::from(config.endpoint.as_str()),
            redactor: Redactor::for_config(all),
            metrics: metrics.route(&config.endpoint),
            config: config.clone(),
        }
    }

    /// Redeems a ticket presented on `route`, counting the outcome.
    pub async fn redeem(
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

    /// `Some(origin)` to echo in CORS headers, `None` for none; `Err` when it is not allowed.
    fn cors_origin(&self, request: &Request<Incoming>) -> Result<Option<HeaderValue>, ProxyError> {
        let Some(origin) = request.headers().get(header::ORIGIN) else {
            return Ok(None);
        };
        if self.origins.is_empty() {
            return Ok(None);
        }
        let allowed = self
            .origins
            .iter()
            .any(|o| o == "*" || o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()));
        if allowed {
            Ok(Some(origin.clone()))
        } else {
            Err(ProxyError::OriginNotAllowed)
        }
    }
}

impl Proxy {
    pub(crate) async fn ticket_endpoint(
        &self,
        desk: &TicketDesk,
        request: Request<Incoming>,
        line: &mut AccessLine,
    ) -> Result<Response<Body>, ProxyError> {
        let cors = desk.cors_origin(&request)?;
        let mut response = match *request.method() {
            Method::OPTIONS => preflight(),
            Method::POST => self.issue(desk, request, line).await?,
            _ => return Err(ProxyError::MethodNotAllowed),
        };
        if let Some(origin) = cors {
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        Ok(response)
    }

    async fn issue(
        &self,
        desk: &TicketDesk,
        request: Request<Incoming>,
        line: &mut AccessLine,
    ) -> Result<Response<Body>, ProxyError> {
        let (parts, body) = request.into_parts();
        let found = token::extract(&parts, &desk.config.tokens, self.max_token_bytes)?
            .ok_or(AuthError::Missing)?;
        let claims = self.validated(&found.token).await?;
        line.subject = self.subject(&claims);
        self.rate_limits
            .tickets
            .check(
                caller(&claims, &found.token, &self.subject_claim),
                desk.config.rate_limit_per_minute,
            )
            .map_err(|retry_after_secs| ProxyError::RateLimited {
                retry_after_secs,
                limit: "ticket_rate",
            })?;
        // Held against the pre-authentication budget and cut after limits.body_read_timeout.
        let body = self
            .pre_auth
            .read_body(body, MAX_BODY_BYTES)
            .await
            .map_err(|e| match e {
                BodyError::Timeout => ProxyError::BodyTimeout,
                BodyError::Over(over) => ProxyError::OverBudget(over),
                BodyError::TooLarge | BodyError::Broken => {
                    ProxyError::BadRequest("the body is not a ticket request")
                }
            })?;
        let wanted = parse_request(&body)?;
        let route = match &wanted.route {
            Some(path) => {
                let route = self
                    .routes
                    .find(path)
                    .ok_or(ProxyError::BadRequest("no route matches that path"))?;
                // Checked now: a ticket the caller could not use anyway is not issued.
                policy::authorize(&route.config, &self.role_claim, Some(claims.clone()))?;
                Some(route.config.path.clone())
            }
            None => None,
        };
        let keep_token = match &route {
            Some(path) => desk.bearer_routes.contains(path),
            None => !desk.bearer_routes.is_empty(),
        };
        // A token without `exp` (introspection may say none) gives a ticket its full ttl.
        let exp = crate::numeric_date::get(&claims, "exp").unwrap_or(u64::MAX);
        let grant = Grant {
            claims,
            token: keep_token.then_some(found.token),
            route,
        };
        let issued = desk
            .store
            .issue(grant, exp)
            .await
            .inspect_err(|e| self.metrics.ticket(e.reason()))?;
        self.metrics.ticket("issued");
        let expires_at = time::OffsetDateTime::from(issued.expires_at)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let body = serde_json::json!({
            "ticket": issued.ticket,
            "expires_at": expires_at,
            "expires_in": issued.expires_in.as_secs(),
        });
        let mut response = crate::body::json(StatusCode::CREATED, &body);
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(response)
    }
}

/// Whose ticket count a request adds to: the issuer and subject, or the token itself when
/// it names no subject. Hashed, so every entry is the same small size.
fn caller(claims: &Claims, token: &BearerToken, subject_claim: &str) -> [u8; 32] {
    let text = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
    let mut hash = Sha256::new();
    match text(subject_claim) {
        Some(subject) => {
            hash.update(b"subject\0");
            hash.update(text("iss").unwrap_or_default());
            hash.update(b"\0");
            hash.update(subject);
        }
        None => {
            hash.update(b"token\0");
            hash.update(token.expose());
        }
    }
    hash.finalize().into()
}

fn parse_request(body: &[u8]) -> Result<TicketRequest, ProxyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(TicketRequest { route: None });
    }
    serde_json::from_slice(body)
        .map_err(|_| ProxyError::BadRequest("expected {\"route\": \"/path\"} or no body"))
}

fn preflight() -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r
}

/// Drops expired tickets every `ttl` until `stop`.
pub async fn sweep(store: Arc<TicketStore>, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(store.ttl()) => store.sweep(),
        }
    }
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
