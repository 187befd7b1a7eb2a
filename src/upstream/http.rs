//! HTTP forwarding: rewrite the request for the upstream, send it over the route's own
//! connections ([`exchange`](super::exchange)) under the route's timeouts, and hand back
//! the streamed response.
//!
//! Bodies are never buffered: the client's `Incoming` goes up as it arrives and the
//! upstream's `Incoming` comes back frame by frame, so an SSE stream reaches the client
//! event by event.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, COOKIE, HOST, REFERER};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body::Body as _;
use http_body_util::{Either, Empty, LengthLimitError, Limited};
use hyper::body::Incoming;

use super::connect::Connector;
use super::endpoints::{Endpoint, InFlight};
use super::exchange::{Connections, Failure, SendError};
use super::forwarded::Hop;
use super::headers;
use super::identity::IdentityHeaders;
use super::multiplex::Caps;
use super::pool::{ClientBody, Limits, Sent};
use super::remembered::Remembered;
use super::stall::{StallClock, Stalled};
use super::targets::Targets;
use super::trailers::WithoutTrailers;
use super::upload::Upload;
use crate::auth::policy::{Access, Permitted};
use crate::body::Body;
use crate::config::{RouteConfig, UpstreamAuth};
use crate::proxy::trace_context::{BAGGAGE, TRACESTATE};
use crate::redact::Redactor;
use crate::secret::BearerToken;
use crate::upstream::error::{AtEndpoint, NoAnswerWithin, UpstreamError};

/// One route's upstream: where it is and how long we wait for it.
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    targets: Targets,
    conns: Connections,
    timeout: Duration,
    /// `limits.body_stall_timeout`.
    body_stall: Duration,
    /// `max_body_bytes`; 0 means none.
    max_body_bytes: u64,
}

/// What the rewrite needs to know about the client side of the request.
pub struct Rewrite<'a> {
    pub client_ip: IpAddr,
    pub https: bool,
    /// The host a trusted proxy says the client asked for; `None`: the request's `Host`.
    pub host: Option<&'a HeaderValue>,
    pub request_id: &'a HeaderValue,
    /// The caller's token, when the route authenticates and one is known.
    pub token: Option<&'a BearerToken>,
    /// `[identity] headers`, set from the permit's access once everything else is done.
    pub identity: &'a Arc<IdentityHeaders>,
    /// The connection's last forwarding and identity values.
    pub remembered: &'a Remembered,
    /// The hop is trusted with trace context: other tracers' fields may pass.
    pub trace_trusted: bool,
}

impl Upstream {
    pub fn new(
        route: &RouteConfig,
        body_stall: Duration,
        ejections: prometheus::IntCounter,
    ) -> Result<Self, String> {
        let parts = route.upstream.clone().into_parts();
        let scheme = parts.scheme.unwrap_or(Scheme::HTTP);
        let ca = route.upstream_ca_file.as_deref();
        let connector = Connector::new(&scheme, route.connect_timeout, ca, route.upstream_http2)?;
        let limits = Limits {
            max_idle: route.upstream_max_idle,
            idle_timeout: route.upstream_idle_timeout,
        };
        let targets = Targets::new(route, ejections)?;
        super::exchange::spawn_sweeper(&targets.pool, limits);
        Ok(Self {
            conns: Connections::new(connector, &scheme, limits, http2_caps(route)),
            scheme,
            authority: parts.authority.ok_or("upstream has no authority")?,
            targets,
            timeout: route.timeout,
            body_stall,
            max_body_bytes: route.max_body_bytes,
        })
    }

    /// Rewrites `parts` in place into the request the upstream receives; only a request
    /// that passed policy can be rewritten. Says which of the fields the caller handles
    /// next (trace context) the request may still have.
    pub fn rewrite(
        &self,
        permitted: &mut Permitted<Parts>,
        route: &RouteConfig,
        redactor: &Redactor,
        ctx: Rewrite<'_>,
    ) -> Result<headers::Seen, UpstreamError> {
        let access = permitted.access().clone();
        let parts = permitted.get_mut();
        let path_and_query = upstream_target(&parts.uri, route, redactor)?;
        // The client sets Host from the upstream URI; the original goes in X-Forwarded-Host.
        // Taken out here, it is not looked up twice.
        let host_field = parts.headers.remove(HOST);
        let original_host = ctx.host.cloned().or(host_field).or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        parts.uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(UpstreamError::BadRequest)?;
        parts.version = Version::HTTP_11;

        let hop = Hop::new(ctx.client_ip, ctx.https, original_host);
        let seen = rewrite_headers(&mut parts.headers, route, redactor, &hop, (&ctx, &access));
        Ok(seen)
    }

    /// Sends the request to one of the route's endpoints and waits for response headers,
    /// at most the route's `timeout` per attempt.
    ///
    /// A body announced larger than `max_body_bytes` is refused before anything is sent;
    /// a chunked one is cut where it crosses the limit, which aborts the upstream request.
    /// An endpoint that refuses the connection is ejected; the request goes to another
    /// one only when it has no body (nothing was sent, and nothing is lost by asking again)
    /// and no sealed SignalR `id` ties it to the endpoint that refused.
    pub async fn forward(
        &self,
        request: Permitted<Request<Incoming>>,
    ) -> Result<Response<Body>, UpstreamError> {
        let (request, _) = request.into_parts();
        let limit = match self.max_body_bytes {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let announced = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|len| len > limit as u64) {
            return Err(UpstreamError::BodyTooLarge { sent: false });
        }
        let stall = self.body_stall;
        let client_body =
            move |body| StallClock::new(Limited::new(WithoutTrailers::new(body), limit), stall);
        if self.targets.is_single() {
            let endpoint = self.targets.pool.endpoints().first().cloned();
            let endpoint = endpoint.ok_or(UpstreamError::NoConnection)?;
            // One `map`: each moves the whole request.
            let request = request.map(|body| Either::Left(Upload::new(client_body(body))));
            // `send`'s steps, not `send`: as a future of its own it held the request once
            // more, and moved it there once more. Pinned where it is made (see
            // `Proxy::handle`).
            let exchange = std::pin::pin!(self.conns.send(&endpoint, request));
            let sent = tokio::time::timeout(self.timeout, exchange).await;
            return self.sent(sent, &endpoint).map_err(|(error, _)| error);
        }
        // Boxed: balancing holds more across its await, and every request's future would
        // be as large as its.
        Box::pin(self.balanced(request.map(client_body))).await
    }

    async fn balanced(
        &self,
        request: Request<ClientBody>,
    ) -> Result<Response<Body>, UpstreamError> {
        let (mut parts, body) = request.into_parts();
        let plan = self.targets.plan(&mut parts)?;
        let empty = body.is_end_stream();
        let body = match empty {
            // Bodiless: an `Empty` can be sent again if the first endpoint refuses.
            true => Either::Right(Empty::new()),
            false => Either::Left(Upload::new(body)),
        };
        let mut request = Request::from_parts(parts, body);
        // Filled only when an endpoint refuses: the usual request allocates nothing here.
        let mut tried = Vec::new();
        loop {
            let endpoint = self
                .targets
                .next(&plan, &tried)
                .ok_or(UpstreamError::NoConnection)?;
            self.targets.aim(&mut request, &endpoint)?;
            let in_flight = InFlight::start(endpoint.clone());
            match self.send(&endpoint, request).await {
                Ok(response) => {
                    self.targets.pool.answered(&endpoint);
                    return self.targets.finish(&plan, response, in_flight).await;
                }
                Err((e @ UpstreamError::Connect(_), unsent)) => {
                    self.targets.pool.eject(&endpoint);
                    tried.push(endpoint);
                    // A connection that never opened took nothing of the request, which
                    // comes back whole; one with a body is still not sent twice.
                    match unsent {
                        Some(unsent) if empty && self.targets.may_retry(&plan, &tried) => {
                            request = unsent;
                        }
                        _ => return Err(e),
                    }
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// One attempt: response headers within the route's `timeout`. A request no
    /// connection took comes back with the error.
    async fn send(
        &self,
        endpoint: &Arc<Endpoint>,
        request: Request<Sent>,
    ) -> Result<Response<Body>, (UpstreamError, Option<Request<Sent>>)> {
        // Pinned where it is made: `timeout` takes its future by value, and the exchange's
        // was copied into it, then with it into this state (see `Proxy::handle`).
        let exchange = std::pin::pin!(self.conns.send(endpoint, request));
        let sent = tokio::time::timeout(self.timeout, exchange).await;
        self.sent(sent, endpoint)
    }

    /// What an attempt came to: its response, or the error and the request when no
    /// connection took it.
    // The request comes back whole, unboxed, as from `send`: the error is rare, and the
    // request goes on to another endpoint without an allocation or a copy of its own.
    #[allow(clippy::result_large_err)]
    fn sent(
        &self,
        sent: Result<Result<Response<Body>, Failure>, tokio::time::error::Elapsed>,
        endpoint: &Arc<Endpoint>,
    ) -> Result<Response<Body>, (UpstreamError, Option<Request<Sent>>)> {
        let mut response = match sent {
            Err(_) => {
                let late = AtEndpoint::boxed(&endpoint.authority, NoAnswerWithin(self.timeout));
                return Err((UpstreamError::Timeout(late), None));
            }
            Ok(Err(Failure { error, unsent })) => {
                return Err((upstream_error(error, endpoint), unsent))
            }
            Ok(Ok(response)) => response,
        };
        // A 101's Connection/Upgrade are the switch itself; `websocket` sets them again.
        headers::remove_hop_by_hop(response.headers_mut());
        Ok(response)
    }
}

/// A route's HTTP/2 caps, if it speaks HTTP/2 upstream.
fn http2_caps(route: &RouteConfig) -> Option<Caps> {
    route.upstream_http2.then_some(Caps {
        streams: route.upstream_http2_max_streams,
        connections: route.upstream_http2_max_connections,
    })
}

fn upstream_error(error: SendError, endpoint: &Endpoint) -> UpstreamError {
    let at = |error| AtEndpoint::boxed(&endpoint.authority, error);
    match error {
        SendError::Failed(e) if caused_by::<LengthLimitError>(&e) => {
            UpstreamError::BodyTooLarge { sent: true }
        }
        SendError::Failed(e) if caused_by::<Stalled>(&e) => UpstreamError::BodyStalled,
        SendError::Failed(e) if client_body_broke(&e) => UpstreamError::BodyBroken,
        e @ (SendError::Connect(_) | SendError::Handshake(_) | SendError::Preface) => {
            UpstreamError::Connect(at(e))
        }
        SendError::HeaderListTooLarge { .. } => UpstreamError::HeadersTooLarge,
        e => UpstreamError::Failed(at(e)),
    }
}

/// The most fields the rewrite adds besides identity headers: `Authorization`, four
/// forwarding headers, `X-Request-Id`, `traceparent` and `tracestate`.
const ADDED_FIELDS: usize = 8;

/// The header rules in their order: the client's hop-by-hop fields first (so `Connection`
/// cannot remove what we set), then its spoofable ones in every spelling, then credentials;
/// the headers gatehouse vouches for are set last. Returns what the strip saw, with the
/// identity headers just set counted as seen.
fn rewrite_headers(
    h: &mut http::HeaderMap,
    route: &RouteConfig,
    redactor: &Redactor,
    hop: &Hop,
    (ctx, access): (&Rewrite<'_>, &Access),
) -> headers::Seen {
    // Room for what is added below (forwarding, request id, identity, trace context) at
    // once: the map hyper parsed fits the client's fields, and grew twice on the way. It
    // cannot fail: a request's fields (100 on HTTP/1.1, `max_header_bytes` on HTTP/2) stay
    // far below the map's limit.
    let _ = h.try_reserve(ADDED_FIELDS + ctx.identity.names().len());
    let mut seen = headers::strip_client(h, ctx.identity.names(), ctx.trace_trusted);
    ctx.identity.strip_rules().apply(h);
    if seen.cookie {
        join_cookies(h);
        remove_token_cookies(h, redactor);
    }
    if seen.websocket_protocol {
        crate::websocket::remove_token_protocols(h);
    }
    if seen.authorization {
        h.remove(AUTHORIZATION);
    }
    if seen.referer {
        redact_referer(h, redactor);
    }
    if route.upstream_auth == UpstreamAuth::Bearer {
        if let Some(token) = ctx.token {
            if let Ok(value) = HeaderValue::from_str(&format!("Bearer {}", token.expose())) {
                h.insert(AUTHORIZATION, value);
            }
        }
    }
    hop.apply(h, &ctx.remembered.forwarding);
    h.insert(headers::X_REQUEST_ID.clone(), ctx.request_id.clone());
    let remembered = &ctx.remembered.identity;
    crate::upstream::identity::attach(h, ctx.identity, access, remembered);
    // An identity header may have any name the config does not reserve, trace fields too.
    for (name, _) in ctx.identity.names() {
        seen.tracestate |= *name == TRACESTATE;
        seen.baggage |= *name == BAGGAGE;
    }
    seen
}

/// The request target the upstream sees: the prefix stripped, token parameters out of the
/// query. When neither changes anything, the client's bytes are shared, not copied.
fn upstream_target(
    uri: &Uri,
    route: &RouteConfig,
    redactor: &Redactor,
) -> Result<PathAndQuery, UpstreamError> {
    let query = uri.query().and_then(|q| redactor.for_upstream(q));
    let unchanged_query = matches!(
        (&query, uri.query()),
        (None, None) | (Some(std::borrow::Cow::Borrowed(_)), Some(_))
    );
    if !route.strip_prefix && unchanged_query {
        if let Some(target) = uri.path_and_query() {
            return Ok(target.clone());
        }
    }
    let path = if route.strip_prefix {
        strip(&route.path, uri.path())
    } else {
        uri.path().to_string()
    };
    let target = match query {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    PathAndQuery::try_from(target).map_err(|e| UpstreamError::BadRequest(e.into()))
}

/// hyper calls a failure of the body we gave it a user error, with the body's own error as
/// its source; of the bodies we give it, only the client's `Incoming` fails with a
/// `hyper::Error` of its own (a reset stream, a connection closed mid-upload).
fn client_body_broke(error: &hyper::Error) -> bool {
    use std::error::Error as _;
    error.is_user() && error.source().is_some_and(caused_by::<hyper::Error>)
}

/// Whether `error` or one of its causes is an `E` (our body's own errors come back wrapped).
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<E>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The page that sent the request may have had a token in its own URL (a SignalR page
/// opened with `?access_token=`): `Referer` would carry it upstream as surely as the
/// request's URL. Its query loses the same parameters; a second `Referer` goes, and so does
/// one with a query that is not visible ASCII.
fn redact_referer(h: &mut http::HeaderMap, redactor: &Redactor) {
    let mut values = h.get_all(REFERER).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        h.remove(REFERER);
        return;
    };
    let Some(mark) = memchr::memchr(b'?', value.as_bytes()) else {
        return;
    };
    let Ok(text) = value.to_str() else {
        h.remove(REFERER);
        return;
    };
    let (page, after) = (&text[..mark], &text[mark + 1..]);
    let (query, fragment) = after.split_at(after.find('#').unwrap_or(after.len()));
    let kept = match redactor.for_upstream(query) {
        Some(std::borrow::Cow::Borrowed(_)) => return,
        Some(std::borrow::Cow::Owned(kept)) => format!("{page}?{kept}{fragment}"),
        None if query.is_empty() => return,
        None => format!("{page}{fragment}"),
    };
    match HeaderValue::from_str(&kept) {
        Ok(value) => h.insert(REFERER, value),
        Err(_) => h.remove(REFERER),
    };
}

/// HTTP/2 clients may split `Cookie` over several fields; HTTP/1.1 wants one (RFC 9113 §8.2.3).
fn join_cookies(h: &mut http::HeaderMap) {
    if h.get_all(COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined = h
        .get_all(COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        h.insert(COOKIE, value);
    }
}

/// Removes every cookie that carries a token for any route, keeping the others. A pair
/// that some parser would split on `,` (RFC 2965 style) goes whole when any part is one.
fn remove_token_cookies(h: &mut http::HeaderMap, redactor: &Redactor) {
    let is_token = |part: &[u8]| {
        let name = part.split(|b| *b == b'=').next().unwrap_or_default();
        redactor.is_token_cookie(String::from_utf8_lossy(name).trim())
    };
    let Some(cookie) = h.get(COOKIE) else {
        return;
    };
    let kept = cookie
        .as_bytes()
        .split(|b| *b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty() && !pair.split(|b| *b == b',').any(is_token))
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    match HeaderValue::from_bytes(&kept) {
        Ok(value) if !kept.is_empty() => h.insert(COOKIE, value),
        _ => h.remove(COOKIE),
    };
}

/// The path the upstream sees when the route strips its prefix: always starts with `/`.
/// It drops as many segments as the prefix has, so the client's spelling of the prefix
/// (case, `;params`) goes with it.
pub fn strip(prefix: &str, path: &str) -> String {
    if prefix == "/" {
        return path.to_string();
    }
    let segments = prefix.matches('/').count();
    match path.match_indices('/').nth(segments) {
        Some((at, _)) => path[at..].to_string(),
        None => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        Redactor::new(["access_token"]).with_names([], ["at", "session_token"])
    }

    #[test]
    fn token_cookies_are_removed_in_every_spelling_and_others_kept() {
        let mut h = http::HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1"));
        h.append(
            COOKIE,
            HeaderValue::from_static("at=s; AT=s; Session.Token=s; session_token[]=s; b=2"),
        );
        h.append(
            COOKIE,
            HeaderValue::from_static("c=3, session_token=s; access_token=x"),
        );
        join_cookies(&mut h);
        remove_token_cookies(&mut h, &redactor());
        assert_eq!(h[COOKIE], "a=1; b=2; access_token=x");
        let mut only = http::HeaderMap::new();
        only.insert(COOKIE, HeaderValue::from_static("at=secret"));
        remove_token_cookies(&mut only, &redactor());
        assert!(only.get(COOKIE).is_none());
    }

    #[test]
    fn strip_keeps_a_leading_slash() {
        assert_eq!(strip("/hubs/chat", "/hubs/chat/x"), "/x");
        assert_eq!(strip("/hubs/chat", "/hubs/chat"), "/");
        assert_eq!(strip("/", "/a/b"), "/a/b");
        assert_eq!(strip("/hubs/chat", "/HUBS/Chat/x/y"), "/x/y");
        assert_eq!(strip("/hubs", "/hubs;jsessionid=1/x"), "/x");
    }
}
