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

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::key_board::KeyBoard;
use crate::auth::revocation::Revocations;
use crate::auth::validate::Validator;
use crate::body::Body;
use crate::canonical::{self, PathRules, Refusal, Target};
use crate::cidr::{client_key, CidrSet};
use crate::config::upstream::Affinity;
use crate::config::{Config, IdentityClaims, RouteConfig};
use crate::metrics::Metrics;
use crate::proxy::access_log::{AccessLine, Labels};
use crate::proxy::authenticate::Authenticator;
use crate::proxy::client::Client;
use crate::proxy::cors;
use crate::proxy::error::ProxyError;
use crate::proxy::logout::LogoutDesk;
use crate::proxy::rate_limit::RateLimits;
use crate::proxy::request_span::{RequestSpan, RequestTracer, Target as SpanTarget};
use crate::proxy::route::RouteTable;
use crate::proxy::ticket_desk::TicketDesk;
use crate::proxy::trace_context::{Drawn, TraceContext};
use crate::tickets::TicketStore;
use crate::upstream::headers::{self, X_REQUEST_ID};
use crate::upstream::identity::IdentityHeaders;
use crate::upstream::Remembered;
use crate::upstream::Upstream;

/// Where a request goes: an endpoint gatehouse answers itself (before routing), a route,
/// or nowhere (no route matches, or the target was refused).
#[derive(Clone, Copy)]
enum Destination<'a> {
    Tickets(&'a TicketDesk),
    Logout(&'a LogoutDesk),
    Route(&'a Arc<Route>),
    Nowhere,
}

impl<'a> Destination<'a> {
    /// The route's name, redactor and metrics; `fallback` for nowhere.
    fn labels(self, fallback: &'a Labels) -> &'a Labels {
        match self {
            Self::Tickets(desk) => &desk.labels,
            Self::Logout(desk) => &desk.labels,
            Self::Route(route) => &route.labels,
            Self::Nowhere => fallback,
        }
    }

    fn cors_rules(self) -> Option<cors::Rules<'a>> {
        match self {
            Self::Tickets(desk) => Some(desk.cors.rules()),
            Self::Logout(desk) => Some(desk.cors.rules()),
            Self::Route(route) => Some(cors::Rules::of_route(&route.config)),
            Self::Nowhere => None,
        }
    }
}

/// A route with everything the request path needs, built once at start.
pub(crate) struct Route {
    pub config: RouteConfig,
    pub(crate) upstream: Upstream,
    pub(crate) labels: Labels,
}

/// Marks an HTTP/1.1 request that gave both `Content-Length` and `Transfer-Encoding`
/// (hyper keeps only the latter); it is refused with 400, never forwarded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AmbiguousFraming;

/// The client side of a connection: what the edge hands the proxy with every request.
#[derive(Clone)]
pub(crate) struct Conn {
    pub peer: SocketAddr,
    /// What sent us the requests: the peer, or a trusted peer's PROXY header source.
    pub hop: IpAddr,
    /// Whether a trusted hop may speak for the client (`X-Forwarded-*`, trace context):
    /// not when a PROXY header named no address, where the headers are the client's own.
    pub vouches: bool,
    pub https: bool,
    /// The connection's place under the connection limits. It rides on the connection,
    /// not on a request, so no request can lose it or carry another connection's; a
    /// WebSocket session clones it and holds it until the session ends.
    pub(crate) hold: ConnHold,
    /// The forwarding and identity header values of the connection's last requests.
    pub(crate) remembered: Arc<Remembered>,
}

/// Who sent a request and its place in a trace, resolved once by `handle`: the upstream
/// rewrite sets the forwarding and trace headers from them.
#[derive(Clone)]
pub(crate) struct Caller {
    pub(crate) client: Client,
    pub(crate) trace: TraceContext,
}

/// What keeps a connection counted against the connection limits. Opaque here: the edge
/// made it.
pub(crate) type ConnHold = Arc<dyn std::any::Any + Send + Sync>;

/// What the proxy takes from the state that outlives a reload (`shared.rs` hands it over).
pub(crate) struct Lasting {
    pub metrics: Arc<Metrics>,
    pub revocations: Arc<Revocations>,
    /// Present whenever `[tickets]` is set.
    pub tickets: Option<Arc<TicketStore>>,
    pub rate_limits: Arc<RateLimits>,
    /// Cancelled when the grace period ends: open WebSockets close with 1001.
    pub drain: CancellationToken,
    /// Every WebSocket session task, so the drain can wait for them.
    pub sessions: TaskTracker,
    /// Records request spans when `[trace] otlp_endpoint` is set.
    pub tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    /// The keys published now, which open sessions are held to.
    pub key_board: Arc<KeyBoard>,
}

pub(crate) struct Proxy {
    pub(crate) routes: RouteTable<Arc<Route>>,
    pub(crate) auth: Authenticator,
    /// `[identity] headers`: one per generation, which connections' remembered identity
    /// values are matched against.
    pub(crate) identity: Arc<IdentityHeaders>,
    /// The subject, role and scope claim paths of `[identity]`.
    pub(crate) claims: IdentityClaims,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tickets: Option<TicketDesk>,
    pub(crate) logout: Option<LogoutDesk>,
    /// `limits.requests_per_ip_per_second`; 0 = off.
    requests_per_ip: u32,
    /// The counters, kept across reloads.
    pub(crate) rate_limits: Arc<RateLimits>,
    /// Cancelled when the grace period ends: open WebSockets close with 1001.
    pub(crate) drain: CancellationToken,
    /// Every WebSocket session task, so the drain can wait for them.
    pub(crate) sessions: TaskTracker,
    /// The keys published now: sessions end when the key that verified them is withdrawn.
    pub(crate) key_board: Arc<KeyBoard>,
    pub(crate) pre_auth: crate::proxy::pre_auth::PreAuthBudget,
    /// Used for requests that match no route.
    fallback: Labels,
    /// `[paths]`.
    pub(crate) paths: PathRules,
    /// `listen.trusted_proxies`: whose `X-Forwarded-*` name the client (`client.rs`).
    pub(crate) trusted_proxies: CidrSet,
    /// W3C trace context and, when configured, the request's span.
    tracer: RequestTracer,
}

impl Proxy {
    pub(crate) fn new(
        config: &Config,
        validator: Validator,
        lasting: Lasting,
    ) -> Result<Self, String> {
        let metrics = &lasting.metrics;
        let mut routes = Vec::new();
        let redactor = config.redactor();
        for rc in &config.routes {
            let ejections = metrics.upstream_ejections(&rc.path);
            let upstream = Upstream::new(rc, config.body_stall_timeout, ejections)
                .map_err(|e| format!("route {}: {e}", rc.path))?;
            let route = Route {
                labels: Labels::new(&rc.path, route_redactor(&redactor, rc), metrics),
                config: rc.clone(),
                upstream,
            };
            routes.push((rc.path.clone(), rc.case_sensitive, Arc::new(route)));
        }
        Ok(Self {
            routes: RouteTable::with_case(routes),
            auth: Authenticator::new(validator, lasting.revocations, config.max_token_bytes),
            identity: Arc::new(IdentityHeaders::new(config)),
            claims: config.claims.clone(),
            tickets: config
                .tickets
                .as_ref()
                .map(|t| TicketDesk::new(t, config, lasting.tickets.clone(), metrics)),
            logout: config
                .logout
                .as_ref()
                .map(|l| LogoutDesk::new(l, config, metrics)),
            requests_per_ip: config.requests_per_ip_per_second,
            rate_limits: lasting.rate_limits,
            drain: lasting.drain,
            sessions: lasting.sessions,
            key_board: lasting.key_board,
            pre_auth: crate::proxy::pre_auth::PreAuthBudget::new(&config.pre_auth),
            fallback: Labels::new("-", redactor, metrics),
            metrics: metrics.clone(),
            paths: config.paths,
            trusted_proxies: config.client_trust.trusted_proxies.clone(),
            tracer: RequestTracer::new(lasting.tracer, config.trace.trust_incoming),
        })
    }

    /// Answers one request; never fails: every error becomes a response here.
    pub(crate) async fn handle(
        self: Arc<Self>,
        mut request: Request<Incoming>,
        conn: Conn,
    ) -> Response<Body> {
        let refused = self.canonicalise(&mut request, &conn).err();
        let path = canonical::routing_path(request.uri().path(), &self.paths);
        let destination = match refused {
            Some(_) => Destination::Nowhere,
            None => self.destination(&path),
        };
        let labels = destination.labels(&self.fallback);
        let drawn = Drawn::new();
        let request_id = headers::request_id_or(request.headers(), || drawn.request_uuid());
        let cors_seen = cors::Seen::of(&request);
        let method = request.method().clone();
        let span = self.begin_span(&request, &path, &labels.name, (&conn, &drawn));
        let (mut line, caller) = self.begin(&request, &conn, &span, labels, &request_id);
        // Refused targets still count against the client's request rate.
        let admissible = self
            .admissible(&request, caller.client.addr)
            .and_then(|()| refused.map_or(Ok(()), |r| Err(ProxyError::Path(r))));
        // Dispatched here, not in a function of its own: an async one held the request
        // once more in its future, and moved it there once more, on every request. The
        // desks are boxed: their futures are large and rare, and every request's future
        // (moved as a whole) would otherwise be as large as theirs.
        let result = match (admissible, destination) {
            (Err(e), _) => Err(e),
            (Ok(()), Destination::Tickets(desk)) => {
                let request = (request, caller.client.https);
                Box::pin(self.ticket_endpoint(desk, request, &mut line)).await
            }
            (Ok(()), Destination::Logout(desk)) => {
                let request = (request, caller.client.https);
                Box::pin(self.logout_endpoint(desk, request, &mut line)).await
            }
            (Ok(()), Destination::Route(route)) => {
                let context = (&conn, &caller, &request_id);
                // Pinned where it is made: `.await` on the call itself first moves the
                // callee's whole future (kilobytes: everything down to the upstream
                // exchange) into this one's state, a copy per request at every level of
                // the request path. Made in place, nothing is copied; the state is no larger.
                std::pin::pin!(self.pipeline(request, route, context, &mut line)).await
            }
            (Ok(()), Destination::Nowhere) => Err(ProxyError::NoRoute),
        };
        let own_error = result.is_err();
        let mut response = result.unwrap_or_else(|error| {
            line.reason = Some(error.count(&self.metrics, &labels.name));
            error.into_response()
        });
        if let Some(rules) = destination.cors_rules() {
            cors::finish(&rules, &cors_seen, own_error, &mut response);
        }
        response
            .headers_mut()
            .insert(X_REQUEST_ID.clone(), request_id);
        labels
            .metrics
            .observe(&method, response.status(), line.elapsed());
        span.end(response.status(), line.reason);
        line.finish(response)
    }

    /// The endpoint gatehouse answers itself at this path, if any (it wins over routes),
    /// else the route.
    fn destination(&self, path: &str) -> Destination<'_> {
        let is = |endpoint: &str| endpoint.eq_ignore_ascii_case(path);
        if let Some(desk) = self.tickets.as_ref().filter(|d| is(&d.config.endpoint)) {
            return Destination::Tickets(desk);
        }
        if let Some(desk) = self.logout.as_ref().filter(|d| is(&d.config.endpoint)) {
            return Destination::Logout(desk);
        }
        self.routes
            .find(path)
            .map_or(Destination::Nowhere, Destination::Route)
    }

    /// The request's one client and trace context, and its access line, begun before
    /// anything can refuse it.
    fn begin(
        &self,
        request: &Request<Incoming>,
        conn: &Conn,
        span: &RequestSpan,
        labels: &Labels,
        request_id: &HeaderValue,
    ) -> (AccessLine, Caller) {
        let no_one = CidrSet::default();
        let trusted = match conn.vouches {
            true => &self.trusted_proxies,
            false => &no_one,
        };
        let client = Client::resolve(conn.hop, conn.https, request.headers(), trusted);
        let (redactor, name) = (&labels.redactor, labels.name.clone());
        let mut line = AccessLine::begin(request, client.addr, redactor, name, request_id);
        line.trace_id = line.logged().then(|| span.context.trace_id_hex());
        let trace = span.context.clone();
        (line, Caller { client, trace })
    }

    /// Starts the request's span; its trace context goes to the upstream rewrite in the
    /// request's [`Caller`].
    fn begin_span(
        &self,
        request: &Request<Incoming>,
        path: &str,
        route: &str,
        (conn, drawn): (&Conn, &Drawn),
    ) -> RequestSpan {
        let target = SpanTarget {
            method: request.method(),
            path,
            route,
        };
        // With trusted proxies listed, only they may continue a trace: a client that
        // reaches the listener directly must not choose trace ids.
        let trusted_hop = self.trusted_proxies.is_empty()
            || (conn.vouches && self.trusted_proxies.contains(conn.hop));
        self.tracer
            .start(request.headers(), &target, (trusted_hop, drawn))
    }

    /// Replaces the request target with its canonical origin-form; HTTP/2 `:authority`
    /// becomes `Host` when the client sent none.
    fn canonicalise(&self, request: &mut Request<Incoming>, conn: &Conn) -> Result<(), Refusal> {
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
    fn admissible(&self, request: &Request<Incoming>, client: IpAddr) -> Result<(), ProxyError> {
        if request.extensions().get::<AmbiguousFraming>().is_some() {
            return Err(ProxyError::BadRequest(
                "Content-Length and Transfer-Encoding together",
            ));
        }
        // RFC 9113 §8.2.1 (HTTP/1.1 parsers trim such whitespace before it reaches us).
        if request.version() == http::Version::HTTP_2 && request.headers().values().any(padded) {
            return Err(ProxyError::BadRequest(
                "a header value with whitespace at either end",
            ));
        }
        if self.requests_per_ip == 0 {
            return Ok(());
        }
        self.rate_limits
            .requests_per_ip
            .check(client_key(client), self.requests_per_ip)
            .map_err(|retry_after_secs| ProxyError::RateLimited {
                retry_after_secs,
                limit: "requests_per_ip",
            })
    }
}

/// Whether a field value begins or ends with whitespace, which HTTP/1.1 would trim: an
/// HTTP/2 request with one is malformed, and an upstream would read another value.
fn padded(value: &http::HeaderValue) -> bool {
    let bytes = value.as_bytes();
    matches!(bytes.first(), Some(b' ' | b'\t')) || matches!(bytes.last(), Some(b' ' | b'\t'))
}

/// The redactor of a route's access lines: on SignalR affinity routes the connection token
/// in `id` is a bearer secret to the hub, so it is logged redacted (and still forwarded).
fn route_redactor(redactor: &crate::redact::Redactor, rc: &RouteConfig) -> crate::redact::Redactor {
    match rc.endpoints.affinity {
        Affinity::SignalR => redactor.clone().with_log_only(["id"]),
        Affinity::None => redactor.clone(),
    }
}
