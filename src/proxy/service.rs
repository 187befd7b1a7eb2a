//! The HTTP service: [`Proxy::handle`] turns errors into responses, records metrics and
//! writes the access line around [`Proxy::pipeline`], the request path as one `?` chain:
//!
//! 1. `route`: longest whole-segment prefix, else 404;
//! 2. `extract`: the token from the route's sources, in order;
//! 3. `validate`: signature and claims (cached), see `validate.rs`;
//! 4. `authorize`: route policy, which yields the `Access` permit;
//! 5. `rewrite`: redacted URI; spoofable and credential headers out; forwarding and
//!    identity headers (last) in; then `forward` through the pooled upstream client;
//! 7. for a WebSocket upgrade answered `101`: `relay` frames (see `upgrade.rs`).
//!
//! Before all of it, the request target is made canonical (`canonical.rs`) and replaces
//! the URI, so the ticket endpoint, routing, token extraction, the access log and the
//! upstream all read one spelling; a target that cannot be made unambiguous gets 400.
//! The ticket and logout endpoints are answered before routing (`ticket_desk`, `logout`).

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderName, Request, Response};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::claims::Claims;
use crate::auth::revocation::Revocations;
use crate::auth::validate::Validator;
use crate::body::Body;
use crate::canonical::{self, PathRules, Refusal, Target};
use crate::config::{Config, RouteConfig};
use crate::metrics::{Metrics, RouteMetrics};
use crate::proxy::access_log::AccessLine;
use crate::proxy::error::ProxyError;
use crate::proxy::logout::LogoutDesk;
use crate::proxy::rate_limit::RateLimits;
use crate::proxy::route::RouteTable;
use crate::proxy::ticket_desk::TicketDesk;
use crate::redact::Redactor;
use crate::secret::BearerToken;
use crate::tickets::TicketStore;
use crate::upstream::error::UpstreamError;
use crate::upstream::headers::{self, X_REQUEST_ID};
use crate::upstream::Upstream;

/// An endpoint gatehouse answers itself, before routing.
enum Own<'a> {
    Tickets(&'a TicketDesk),
    Logout(&'a LogoutDesk),
}

/// A route with everything the request path needs, built once at start.
pub struct Route {
    pub config: RouteConfig,
    pub(crate) name: Arc<str>,
    pub(crate) upstream: Upstream,
    /// Every credential name any route reads, plus `log.redact_params` (one list for all).
    pub(crate) redactor: Redactor,
    metrics: RouteMetrics,
}

/// Marks an HTTP/1.1 request that gave both `Content-Length` and `Transfer-Encoding`
/// (hyper keeps only the latter); it is refused with 400, never forwarded.
#[derive(Debug, Clone, Copy)]
pub struct AmbiguousFraming;

/// The client side of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub https: bool,
}

/// What keeps an upgradable connection counted against the connection limits; a
/// WebSocket session holds it until the session ends. Opaque here: the edge made it.
pub type ConnHold = Arc<dyn std::any::Any + Send + Sync>;

/// A caller who proved who they are, by token or by ticket.
pub(crate) struct Credential {
    pub(crate) claims: Arc<Claims>,
    /// The token itself, for `upstream_auth = "bearer"`; a ticket may carry none.
    pub(crate) token: Option<BearerToken>,
}

/// What the proxy takes from the state that outlives a reload (`shared.rs` hands it over).
pub struct Lasting {
    pub metrics: Arc<Metrics>,
    pub revocations: Arc<Revocations>,
    /// Present whenever `[tickets]` is set.
    pub tickets: Option<Arc<TicketStore>>,
    pub rate_limits: Arc<RateLimits>,
    /// Cancelled when the grace period ends: open WebSockets close with 1001.
    pub drain: CancellationToken,
    /// Every WebSocket session task, so the drain can wait for them.
    pub sessions: TaskTracker,
}

pub struct Proxy {
    pub(crate) routes: RouteTable<Arc<Route>>,
    pub(crate) validator: Validator,
    pub(crate) identity_headers: Vec<(HeaderName, String)>,
    pub(crate) subject_claim: String,
    pub(crate) role_claim: String,
    pub(crate) max_token_bytes: usize,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tickets: Option<TicketDesk>,
    pub(crate) logout: Option<LogoutDesk>,
    pub(crate) revocations: Arc<Revocations>,
    /// `limits.requests_per_ip_per_second`; 0 = off.
    requests_per_ip: u32,
    /// The counters, kept across reloads.
    pub(crate) rate_limits: Arc<RateLimits>,
    /// Cancelled when the grace period ends: open WebSockets close with 1001.
    pub(crate) drain: CancellationToken,
    /// Every WebSocket session task, so the drain can wait for them.
    pub(crate) sessions: TaskTracker,
    pub(crate) pre_auth: crate::proxy::pre_auth::PreAuthBudget,
    /// Used for requests that match no route.
    fallback: (Arc<str>, Redactor, RouteMetrics),
    /// `[paths]`.
    paths: PathRules,
}

impl Proxy {
    pub fn new(config: &Config, validator: Validator, lasting: Lasting) -> Result<Self, String> {
        let metrics = &lasting.metrics;
        let mut routes = Vec::new();
        let redactor = config.redactor();
        for rc in &config.routes {
            let upstream = Upstream::new(rc, config.body_stall_timeout)
                .map_err(|e| format!("route {}: {e}", rc.path))?;
            let route = Route {
                name: Arc::from(rc.path.as_str()),
                metrics: metrics.route(&rc.path),
                config: rc.clone(),
                upstream,
                redactor: redactor.clone(),
            };
            routes.push((rc.path.clone(), rc.case_sensitive, Arc::new(route)));
        }
        Ok(Self {
            routes: RouteTable::with_case(routes),
            validator,
            identity_headers: config.identity_headers.clone(),
            subject_claim: config.subject_claim.clone(),
            role_claim: config.role_claim.clone(),
            max_token_bytes: config.max_token_bytes,
            tickets: config
                .tickets
                .as_ref()
                .map(|t| TicketDesk::new(t, config, lasting.tickets.clone(), metrics)),
            logout: config
                .logout
                .as_ref()
                .map(|l| LogoutDesk::new(l, config, metrics)),
            revocations: lasting.revocations,
            requests_per_ip: config.requests_per_ip_per_second,
            rate_limits: lasting.rate_limits,
            drain: lasting.drain,
            sessions: lasting.sessions,
            pre_auth: crate::proxy::pre_auth::PreAuthBudget::new(&config.pre_auth),
            fallback: (Arc::from("-"), redactor, metrics.route("-")),
            metrics: metrics.clone(),
            paths: config.paths,
        })
    }

    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    /// Answers one request; never fails: every error becomes a response here.
    pub async fn handle(
        self: &Arc<Self>,
        mut request: Request<Incoming>,
        conn: Conn,
    ) -> Response<Body> {
        let refused = self.canonicalise(&mut request, conn).err();
        let path = canonical::routing_path(request.uri().path(), &self.paths);
        let own = refused
            .is_none()
            .then(|| self.own_endpoint(&path))
            .flatten();
        let route = if own.is_some() || refused.is_some() {
            None
        } else {
            self.routes.find(&path)
        };
        let (name, redactor, metrics) = match (&own, route) {
            (Some(Own::Tickets(d)), _) => (&d.name, &d.redactor, &d.metrics),
            (Some(Own::Logout(d)), _) => (&d.name, &d.redactor, &d.metrics),
            (None, Some(r)) => (&r.name, &r.redactor, &r.metrics),
            (None, None) => (&self.fallback.0, &self.fallback.1, &self.fallback.2),
        };
        let request_id = headers::request_id(request.headers());
        let mut line = AccessLine::begin(
            &request,
            conn.peer.ip(),
            redactor,
            name.clone(),
            &request_id,
        );
        // Refused targets still count against the client's request rate.
        let admissible = self
            .admissible(&request, conn)
            .and_then(|()| refused.map_or(Ok(()), |r| Err(ProxyError::Path(r))));
        let result = match (admissible, own, route) {
            (Err(e), _, _) => Err(e),
            (_, Some(Own::Tickets(d)), _) => self.ticket_endpoint(d, request, &mut line).await,
            (_, Some(Own::Logout(d)), _) => self.logout_endpoint(d, request, &mut line).await,
            (_, None, Some(route)) => {
                self.pipeline(request, route, conn, &request_id, &mut line)
                    .await
            }
            (_, None, None) => Err(ProxyError::NoRoute),
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

    /// The endpoint gatehouse answers itself at this path, if any; it wins over routes.
    fn own_endpoint(&self, path: &str) -> Option<Own<'_>> {
        let is = |endpoint: &str| endpoint.eq_ignore_ascii_case(path);
        if let Some(desk) = self.tickets.as_ref().filter(|d| is(&d.config.endpoint)) {
            return Some(Own::Tickets(desk));
        }
        self.logout
            .as_ref()
            .filter(|d| is(&d.config.endpoint))
            .map(Own::Logout)
    }

    /// Replaces the request target with its canonical origin-form; HTTP/2 `:authority`
    /// becomes `Host` when the client sent none.
    fn canonicalise(&self, request: &mut Request<Incoming>, conn: Conn) -> Result<(), Refusal> {
        let target = Target {
            method: request.method(),
            uri: request.uri(),
            version: request.version(),
            headers: request.headers(),
            https: conn.https,
        };
        let canonical = canonical::target(&target, &self.paths)?;
        *request.uri_mut() = canonical.uri;
        if let Some(host) = canonical.host {
            request.headers_mut().insert(http::header::HOST, host);
        }
        Ok(())
    }

    /// Refuses ambiguous framing, then counts the request against its client address
    /// (`limits.requests_per_ip_per_second`).
    fn admissible(&self, request: &Request<Incoming>, conn: Conn) -> Result<(), ProxyError> {
        if request.extensions().get::<AmbiguousFraming>().is_some() {
            return Err(ProxyError::BadRequest(
                "Content-Length and Transfer-Encoding together",
            ));
        }
        if self.requests_per_ip == 0 {
            return Ok(());
        }
        self.rate_limits
            .requests_per_ip
            .check(conn.peer.ip(), self.requests_per_ip)
            .map_err(|retry_after_secs| ProxyError::RateLimited {
                retry_after_secs,
                limit: "requests_per_ip",
            })
    }

    /// Counts and, for failures that are ours or the upstream's, logs an error once.
    fn record(&self, error: &ProxyError, route: &str) -> &'static str {
        match error {
            ProxyError::NoRoute => "no_route",
            ProxyError::Auth(e) => {
                self.metrics.auth_failure(e.reason());
                e.reason()
            }
            ProxyError::Ticket(e) => {
                self.metrics.auth_failure(e.reason());
                e.reason()
            }
            ProxyError::OriginNotAllowed => "origin_not_allowed",
            ProxyError::RateLimited { limit, .. } => {
                self.metrics.limit_hit(limit);
                "rate_limited"
            }
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::Path(refusal) => refusal.reason(),
            ProxyError::MethodNotAllowed => "method_not_allowed",
            ProxyError::Revoked => {
                self.metrics.auth_failure("token_revoked");
                "token_revoked"
            }
            ProxyError::StoreUnavailable => "store_unavailable",
            ProxyError::OverBudget(e) => {
                self.metrics.limit_hit(e.limit());
                "over_capacity"
            }
            ProxyError::BodyTimeout => {
                self.metrics.limit_hit("body_read_timeout");
                "body_read_timeout"
            }
            ProxyError::Upstream(UpstreamError::BodyTooLarge) => {
                self.metrics.limit_hit("max_body_bytes");
                "payload_too_large"
            }
            ProxyError::Upstream(UpstreamError::BodyStalled) => {
                self.metrics.limit_hit("body_stall_timeout");
                "body_stall_timeout"
            }
            ProxyError::Upstream(e) => {
                self.metrics.upstream_error(route, e.kind());
                tracing::warn!(route, error = %e, cause = ?std::error::Error::source(e), "upstream request failed");
                e.kind()
            }
        }
    }
}
