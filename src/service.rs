//! The HTTP service: [`Proxy::handle`] turns errors into responses, records metrics and
//! writes the access line around [`Proxy::pipeline`], the request path as one `?` chain:
//!
//! 1. `route`: longest whole-segment prefix, else 404;
//! 2. `extract`: the token from the route's sources, in order;
//! 3. `validate`: signature and claims (cached), see `validate.rs`;
//! 4. `authorize`: route policy, which yields the `Access` permit;
//! 5. `attach_identity`: strip client identity headers, set ours;
//! 6. `rewrite` and `forward`: redacted URI, forwarding headers, pooled upstream client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::access_log::AccessLine;
use crate::body::Body;
use crate::config::{AuthMode, Config, RouteConfig, TokenSource};
use crate::error::ProxyError;
use crate::metrics::{Metrics, RouteMetrics};
use crate::policy;
use crate::redact::Redactor;
use crate::route::RouteTable;
use crate::token::{self, Found};
use crate::upstream::headers::{self, X_REQUEST_ID};
use crate::upstream::http::Rewrite;
use crate::upstream::Upstream;
use crate::validate::Validator;

/// A route with everything the request path needs, built once at start.
pub struct Route {
    pub config: RouteConfig,
    name: Arc<str>,
    upstream: Upstream,
    /// `log.redact_params` plus the route's own `query:NAME` token parameters.
    redactor: Redactor,
    metrics: RouteMetrics,
}

/// The client side of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub https: bool,
}

pub struct Proxy {
    routes: RouteTable<Route>,
    validator: Validator,
    identity_headers: Vec<(HeaderName, String)>,
    subject_claim: String,
    role_claim: String,
    max_token_bytes: usize,
    metrics: Arc<Metrics>,
    /// Used for requests that match no route.
    fallback: (Arc<str>, Redactor, RouteMetrics),
}

impl Proxy {
    pub fn new(
        config: &Config,
        validator: Validator,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let mut routes = Vec::new();
        for rc in &config.routes {
            let query_names = rc.tokens.iter().filter_map(|t| match t {
                TokenSource::Query(name) => Some(name.as_str()),
                _ => None,
            });
            let redactor = Redactor::new(
                config
                    .redact_params
                    .iter()
                    .map(String::as_str)
                    .chain(query_names),
            );
            let upstream = Upstream::new(rc).map_err(|e| format!("route {}: {e}", rc.path))?;
            let route = Route {
                name: Arc::from(rc.path.as_str()),
                metrics: metrics.route(&rc.path),
                config: rc.clone(),
                upstream,
                redactor,
            };
            routes.push((rc.path.clone(), route));
        }
        let fallback_redactor = Redactor::new(config.redact_params.iter().map(String::as_str));
        Ok(Self {
            routes: RouteTable::new(routes),
            validator,
            identity_headers: config.identity_headers.clone(),
            subject_claim: config.subject_claim.clone(),
            role_claim: config.role_claim.clone(),
            max_token_bytes: config.max_token_bytes,
            fallback: (Arc::from("-"), fallback_redactor, metrics.route("-")),
            metrics,
        })
    }

    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    /// Answers one request; never fails: every error becomes a response here.
    pub async fn handle(&self, request: Request<Incoming>, conn: Conn) -> Response<Body> {
        let route = self.routes.find(request.uri().path());
        let (name, redactor, metrics) = match route {
            Some(r) => (&r.name, &r.redactor, &r.metrics),
            None => (&self.fallback.0, &self.fallback.1, &self.fallback.2),
        };
        let request_id = headers::request_id(request.headers());
        let mut line = AccessLine::begin(
            &request,
            conn.peer.ip(),
            redactor,
            name.clone(),
            &request_id,
        );
        let result = match route {
            Some(route) => {
                self.pipeline(request, route, conn, &request_id, &mut line)
                    .await
            }
            None => Err(ProxyError::NoRoute),
        };
        let mut response = result.unwrap_or_else(|error| {
            line.reason = Some(self.record(&error, name));
            error.into_response()
        });
        response
            .headers_mut()
            .insert(X_REQUEST_ID.clone(), request_id);
        metrics.observe(response.status(), line.elapsed());
        line.finish(response)
    }

    async fn pipeline(
        &self,
        request: Request<Incoming>,
        route: &Route,
        conn: Conn,
        request_id: &http::HeaderValue,
        line: &mut AccessLine,
    ) -> Result<Response<Body>, ProxyError> {
        let (mut parts, body) = request.into_parts();
        let found = self.extract(&parts, &route.config)?;
        let claims = match &found {
            Some(f) => Some(self.validator.validate(&f.token).await?),
            None => None,
        };
        // Logged before policy runs, so a 403 line says who was refused.
        line.subject = claims
            .as_ref()
            .and_then(|c| c.get(&self.subject_claim))
            .and_then(serde_json::Value::as_str)
            .map(String::from);
        let access = policy::authorize(&route.config, &self.role_claim, claims)?;
        crate::identity::attach(&mut parts.headers, &self.identity_headers, &access);
        let token_cookie = found
            .as_ref()
            .filter(|f| f.origin == token::Origin::Cookie)
            .and_then(|_| {
                route.config.tokens.iter().find_map(|t| match t {
                    TokenSource::Cookie(name) => Some(name.as_str()),
                    _ => None,
                })
            });
        let rewrite = Rewrite {
            client_ip: conn.peer.ip(),
            https: conn.https,
            request_id,
            token: found.as_ref().map(|f| (&f.token, f.origin)),
            token_cookie,
        };
        route
            .upstream
            .rewrite(&mut parts, &route.config, &route.redactor, rewrite)?;
        let sent = Instant::now();
        let response = route
            .upstream
            .forward(Request::from_parts(parts, body))
            .await?;
        line.upstream_time = Some(sent.elapsed());
        Ok(response.map(BodyExt::boxed))
    }

    fn extract(
        &self,
        parts: &http::request::Parts,
        route: &RouteConfig,
    ) -> Result<Option<Found>, ProxyError> {
        if route.auth == AuthMode::None {
            return Ok(None);
        }
        Ok(token::extract(parts, &route.tokens, self.max_token_bytes)?)
    }

    /// Counts and, for failures that are ours or the upstream's, logs an error once.
    fn record(&self, error: &ProxyError, route: &str) -> &'static str {
        match error {
            ProxyError::NoRoute => "no_route",
            ProxyError::Auth(e) => {
                self.metrics.auth_failure(e.reason());
                e.reason()
            }
            ProxyError::Upstream(e) => {
                self.metrics.upstream_error(route, e.kind());
                tracing::warn!(route, error = %e, cause = ?std::error::Error::source(e), "upstream request failed");
                e.kind()
            }
        }
    }
}
