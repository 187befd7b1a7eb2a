//! [`Proxy::pipeline`]: one routed request as one `?` chain, from the token to the
//! upstream's answer (see `service.rs` for the steps and for `handle` around it).

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use crate::auth::claims::Claims;
use crate::auth::error::AuthError;
use crate::auth::key_board::KeyRef;
use crate::auth::policy::{self, Permitted};
use crate::body::Body;
use crate::config::TokenSource;
use crate::proxy::access_log::AccessLine;
use crate::proxy::cors;
use crate::proxy::error::ProxyError;
use crate::proxy::service::{Caller, Conn, ConnHold, Proxy, Route};
use crate::proxy::token_bound::{Bounds, TokenBound};
use crate::proxy::trace_context::Held;
use crate::secret::BearerToken;
use crate::upstream::endpoints::InFlight;
use crate::upstream::error::UpstreamError;
use crate::upstream::http::Rewrite;
use crate::websocket;

/// An upstream answer slower than this is checked against revocations again before it is
/// handed over (`still_vouched`); a quicker one was asked for a moment ago.
const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// What starting a relay needs once the upstream answers: the client's pending upgrade,
/// the connection's hold, the subprotocols offered and the permit for the session.
type PendingRelay = (
    OnUpgrade,
    ConnHold,
    Vec<String>,
    (Permitted<()>, Option<Arc<KeyRef>>),
);

/// Times a request on the access line from the moment it goes out upstream: until the
/// answer, until a failure (`502`, `504`: the upstream was asked, and the line says for how
/// long), or, for a request cut while it waits (the shutdown grace), until the line is
/// written. A request refused before gatehouse reached for the upstream keeps
/// `upstream_ms = -1`. The caller awaits `Upstream::forward` itself, between
/// `AccessLine::asking_upstream` and this: an async function of its own around the await
/// held the request once more in its future, and moved it there once more, every request.
pub(super) fn answered(
    answer: Result<Response<Body>, UpstreamError>,
    line: &mut AccessLine,
) -> Result<(Response<Body>, Duration), ProxyError> {
    match answer {
        Ok(response) => Ok((response, line.upstream_answered())),
        Err(e) => {
            if e.reached_upstream() {
                line.upstream_answered();
            } else {
                line.upstream_not_asked();
            }
            Err(e.into())
        }
    }
}

impl Proxy {
    pub(super) async fn pipeline(
        self: &Arc<Self>,
        mut request: Request<Incoming>,
        route: &Arc<Route>,
        (conn, caller, request_id): (&Conn, &Caller, &HeaderValue),
        line: &mut AccessLine,
    ) -> Result<Response<Body>, ProxyError> {
        if cors::is_preflight(&request) {
            // Boxed, as every rare branch: it would enlarge every request's future.
            let context = (conn, caller, request_id);
            return Box::pin(self.preflight(request, route, context, line)).await;
        }
        let upgrade = route.config.websocket && websocket::is_upgrade_request(&request);
        if upgrade && !websocket::origin_allowed(request.headers(), &route.config.allowed_origins) {
            self.metrics
                .upgrade(&route.labels.name, "origin_not_allowed");
            return Err(ProxyError::OriginNotAllowed);
        }
        if upgrade && !request.body().is_end_stream() {
            // The body would reach the upstream ahead of the relayed stream, where it could
            // read it as frames the relay never checked.
            let refused = Err(ProxyError::BadRequest("a WebSocket handshake with a body"));
            return self.counted(upgrade, route, refused);
        }
        if upgrade && !websocket::key_valid(request.headers()) {
            let refused = Err(ProxyError::BadRequest("a bad Sec-WebSocket-Key"));
            return self.counted(upgrade, route, refused);
        }
        if upgrade && !websocket::version_supported(request.headers()) {
            return self.counted(upgrade, route, Err(ProxyError::WebSocketVersion));
        }
        // Taken before the request is moved upstream: it resolves once we answer 101.
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (parts, body) = request.into_parts();
        let credential = self.auth.request(
            (&parts, caller.client.https),
            &route.config,
            self.tickets.as_ref(),
            &self.metrics,
        );
        let credential = self.counted(upgrade, route, credential.await)?;
        if line.logged() {
            line.subject = credential.as_ref().and_then(|c| self.subject(&c.claims));
        }
        let wants_first_message = route.config.tokens.last() == Some(&TokenSource::FirstMessage);
        let client_upgrade = match client_upgrade {
            Some(pending) if credential.is_none() && wants_first_message => {
                let context = (conn, caller, request_id);
                return self.first_message(route, parts, body, context, pending);
            }
            other => other,
        };
        let claims = credential.as_ref().map(|c| c.claims.clone());
        let permitted = policy::authorize(&route.config, &self.claims, claims, parts);
        let mut permitted = self.counted(upgrade, route, permitted.map_err(ProxyError::from))?;
        let token = credential.as_ref().and_then(|c| c.token.as_ref());
        self.rewrite(route, &mut permitted, (conn, caller, request_id), token)?;
        let mut protocols = Vec::new();
        if upgrade {
            let headers = &mut permitted.get_mut().headers;
            protocols = websocket::offered_protocols(headers);
            websocket::prepare_upstream_request(headers, &protocols);
        }
        let session = permitted.session();
        let request = permitted.map(|parts| Request::from_parts(parts, body));
        line.asking_upstream();
        // Pinned where it is made, not copied (see `Proxy::handle`).
        let answer = std::pin::pin!(route.upstream.forward(request)).await;
        let (response, upstream_time) = answered(answer, line)?;
        route.labels.metrics.upstream(upstream_time);
        let key = credential.and_then(|c| c.key);
        if upstream_time >= RECHECK_AFTER {
            self.still_vouched(route, &session, key.as_deref())?;
        }
        let Some(client) = client_upgrade else {
            return Ok(self.bound_to_token(route, response, (&session, key), request_id));
        };
        let relay = (client, conn.hold.clone(), protocols, (session, key));
        self.answer_upgrade(route, response, relay, request_id)
    }

    /// An answer that took the upstream a while (a long poll: SignalR's last fallback holds
    /// each request until there are messages) is handed over only if its caller is still
    /// vouched for: not revoked meanwhile, its key still published. Expiry is judged when
    /// the request starts, as for any request.
    fn still_vouched(
        &self,
        route: &Route,
        session: &Permitted<()>,
        key: Option<&KeyRef>,
    ) -> Result<(), ProxyError> {
        let Some(identity) = session.access().identity() else {
            return Ok(());
        };
        if !route.config.close_on_expiry {
            return Ok(());
        }
        if self.auth.revocations().is_revoked(identity.claims()) {
            return Err(ProxyError::Revoked);
        }
        if key.is_some_and(|key| !self.key_board.holds(key)) {
            return Err(AuthError::UnknownKey.into());
        }
        Ok(())
    }

    /// A response still streaming on an authenticated route ends with its token, as a
    /// WebSocket does (`token_bound.rs`); one already whole is passed on as it is.
    fn bound_to_token(
        self: &Arc<Self>,
        route: &Arc<Route>,
        response: Response<Body>,
        (session, key): (&Permitted<()>, Option<Arc<KeyRef>>),
        request_id: &HeaderValue,
    ) -> Response<Body> {
        let claims = session.access().identity().map(|i| i.shared_claims());
        match claims {
            Some(claims) if route.config.close_on_expiry && !response.body().is_end_stream() => {
                let bounds = Bounds {
                    proxy: self.clone(),
                    route: route.clone(),
                    claims,
                    key,
                    request_id: request_id.clone(),
                };
                response.map(|body| TokenBound::new(body, bounds).boxed())
            }
            _ => response,
        }
    }

    /// For an upgrade the upstream accepted (`101`), starts the relay; passes the response on.
    fn answer_upgrade(
        self: &Arc<Self>,
        route: &Arc<Route>,
        mut response: Response<Body>,
        (client_upgrade, slot, protocols, session): PendingRelay,
        request_id: &HeaderValue,
    ) -> Result<Response<Body>, ProxyError> {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            self.metrics.upgrade(&route.labels.name, "upstream_refused");
            return Ok(response);
        }
        self.check_chosen_protocol(route, response.headers(), &protocols)?;
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        websocket::prepare_client_response(response.headers_mut());
        // An open WebSocket counts as outstanding on its endpoint until it closes.
        let slot = match response.extensions_mut().remove::<Arc<InFlight>>() {
            Some(in_flight) => Arc::new((slot, in_flight)) as ConnHold,
            None => slot,
        };
        let sides = (client_upgrade, upstream_upgrade, slot);
        self.spawn_relay(route, sides, session, request_id);
        Ok(response)
    }

    /// Counts a refused upgrade in the upgrade metric; passes the result through.
    fn counted<T>(
        &self,
        upgrade: bool,
        route: &Route,
        result: Result<T, ProxyError>,
    ) -> Result<T, ProxyError> {
        if upgrade && result.is_err() {
            self.metrics.upgrade(&route.labels.name, "refused");
        }
        result
    }

    pub(crate) fn rewrite(
        &self,
        route: &Route,
        permitted: &mut Permitted<Parts>,
        (conn, caller, request_id): (&Conn, &Caller, &HeaderValue),
        token: Option<&BearerToken>,
    ) -> Result<(), ProxyError> {
        let client = &caller.client;
        let rewrite = Rewrite {
            client_ip: client.addr,
            https: client.https,
            host: client.host.as_ref(),
            request_id,
            token,
            identity: &self.identity,
            remembered: &conn.remembered,
            trace_trusted: caller.trace.trusted,
        };
        let seen =
            route
                .upstream
                .rewrite(permitted, &route.config, &route.labels.redactor, rewrite)?;
        let held = Held {
            tracestate: seen.tracestate,
            baggage: seen.baggage,
        };
        caller.trace.apply(&mut permitted.get_mut().headers, held);
        Ok(())
    }

    pub(crate) fn subject(&self, claims: &Claims) -> Option<String> {
        self.claims.subject_of(claims).map(String::from)
    }
}
