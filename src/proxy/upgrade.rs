//! The WebSocket end of the request path: the relay task started after a `101`, and the
//! first-message flow, where gatehouse answers the handshake itself and opens the upstream
//! leg only after the client's first message carried a token that passed validation and
//! policy. Nothing reaches the upstream before that; a wrong or late message gets 4401.
//! Until the token validates, the client's bytes count against the pre-authentication
//! budget (`pre_auth`): past this connection's share 1009, past the shared budget 1013.

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::auth::claims::Claims;
use crate::auth::error::AuthError;
use crate::auth::key_board::{KeyRef, KeyWatch};
use crate::auth::policy::{self, Permitted};
use crate::auth::token;
use crate::body::{empty, Body};
use crate::proxy::authenticate::Credential;
use crate::proxy::error::ProxyError;
use crate::proxy::pre_auth::metered::{self, MeteredSocket};
use crate::proxy::pre_auth::OverBudget;
use crate::proxy::service::{Caller, Conn, ConnHold, Proxy, Route};
use crate::upstream::endpoints::InFlight;
use crate::upstream::error::UpstreamError;
use crate::websocket::read_text::{read_text, NotText};
use crate::websocket::relay::{self, RevocationWatch, Session, CLOSE_UNAUTHORIZED};
use crate::websocket::{self as ws};

/// The upstream endpoint's outstanding count, held while a WebSocket is open.
type Held = Option<Arc<InFlight>>;

/// Close code when a valid caller is not allowed on the route.
const CLOSE_FORBIDDEN: u16 = 4403;

impl Proxy {
    /// When the session must end: the token's `exp` plus its issuer's leeway.
    pub(crate) fn deadline(&self, route: &Route, claims: &Claims) -> Option<Instant> {
        if !route.config.close_on_expiry {
            return None;
        }
        let exp = crate::auth::numeric_date::get(claims, "exp")?;
        // Sub-second precision: the close should come at the end, not up to a second later.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // Validation bounds `exp` (year 9999) and config bounds leeway (1h), so neither sum
        // can overflow; were one to, the session ends now rather than never.
        let left = Duration::from_secs(exp)
            .checked_add(self.auth.validator().leeway(claims))
            .map(|end| end.saturating_sub(now));
        let start = Instant::now();
        Some(
            left.and_then(|left| start.checked_add(left))
                .unwrap_or(start),
        )
    }

    /// Relays once both sides have switched protocols; logs and counts the session's end.
    pub(crate) fn spawn_relay(
        self: &Arc<Self>,
        route: &Arc<Route>,
        (client, upstream, slot): (OnUpgrade, OnUpgrade, ConnHold),
        (session, key): (Permitted<()>, Option<Arc<KeyRef>>),
        request_id: &HeaderValue,
    ) {
        let (proxy, route) = (self.clone(), route.clone());
        let request_id = String::from_utf8_lossy(request_id.as_bytes()).into_owned();
        self.sessions.spawn(async move {
            let (client, upstream) = match (client.await, upstream.await) {
                (Ok(c), Ok(u)) => (c, u),
                _ => {
                    proxy.metrics.upgrade(&route.labels.name, "upgrade_failed");
                    return;
                }
            };
            let (client, upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            proxy
                .run_session(&route, client, upstream, (&session, key), &request_id)
                .await;
            // The connection's place under max_connections (and the endpoint's outstanding
            // count) is freed only now.
            drop(slot);
        });
    }

    /// Refuses an upstream `101` whose subprotocol the client never offered (502).
    pub(crate) fn check_chosen_protocol(
        &self,
        route: &Route,
        response: &HeaderMap,
        offered: &[String],
    ) -> Result<(), ProxyError> {
        if ws::chosen_protocol_offered(response, offered) {
            return Ok(());
        }
        self.metrics.upgrade(&route.labels.name, "bad_subprotocol");
        Err(UpstreamError::BadSubprotocol.into())
    }

    async fn run_session<C>(
        &self,
        route: &Route,
        client: C,
        upstream: TokioIo<hyper::upgrade::Upgraded>,
        (permit, key): (&Permitted<()>, Option<Arc<KeyRef>>),
        request_id: &str,
    ) where
        C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        // The claims that passed policy: the session ends when they expire or are revoked.
        let claims = permit.access().identity().map(|i| i.shared_claims());
        self.metrics.upgrade(&route.labels.name, "ok");
        let subject = claims.as_deref().and_then(|c| self.subject(c));
        let deadline = claims.as_deref().and_then(|c| self.deadline(route, c));
        let key = key
            .filter(|_| route.config.close_on_expiry && claims.is_some())
            .map(|key| KeyWatch {
                board: self.key_board.clone(),
                key,
            });
        let revocation = claims
            .filter(|_| route.config.close_on_expiry)
            .map(|claims| RevocationWatch::new(claims, self.auth.revocations()));
        let open = self.metrics.websockets_open(&route.labels.name);
        open.inc();
        let started = StdInstant::now();
        let session = Session {
            deadline,
            revocation,
            key,
            idle_timeout: route.config.idle_timeout,
            lifetime_end: route.config.max_lifetime.map(|d| Instant::now() + d),
            drain: self.drain.clone(),
            max_message_bytes: route.config.max_message_bytes,
        };
        let end = relay::relay(client, upstream, session).await;
        open.dec();
        self.metrics
            .websocket_closed(&route.labels.name, end.reason);
        tracing::info!(
            target: "gatehouse::access",
            event = "websocket_close",
            request_id,
            route = %route.labels.name,
            subject = subject.as_deref().unwrap_or("-"),
            reason = end.reason,
            close_code = end.code.map_or(-1, i32::from),
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            messages = end.messages,
            bytes_from_client = end.client_bytes,
            bytes_from_upstream = end.upstream_bytes,
        );
    }

    /// Answers the handshake ourselves, then authenticates from the first message.
    pub(crate) fn first_message(
        self: &Arc<Self>,
        route: &Arc<Route>,
        parts: Parts,
        body: Incoming,
        (conn, caller, request_id): (&Conn, &Caller, &HeaderValue),
        client_upgrade: OnUpgrade,
    ) -> Result<Response<Body>, ProxyError> {
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or(ProxyError::BadRequest(
                "a WebSocket upgrade needs Sec-WebSocket-Key",
            ))?;
        // The client's 101 goes out before the upstream is asked, so gatehouse picks: the
        // first subprotocol offered, the client's own preference. Only that one is offered
        // upstream, and an upstream that does not choose it ends the session (see
        // `open_upstream`): the client never speaks a protocol the upstream did not agree to.
        let protocol = ws::offered_protocols(&parts.headers).into_iter().next();
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        ws::prepare_client_response(h);
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .map_err(|_| ProxyError::BadRequest("bad Sec-WebSocket-Key"))?;
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        if let Some(p) = protocol
            .as_deref()
            .and_then(|p| HeaderValue::from_str(p).ok())
        {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
        }
        let (proxy, route) = (self.clone(), route.clone());
        let (caller, request_id) = (caller.clone(), request_id.clone());
        // Held apart from `conn`, which the authentication may let go of early.
        let (conn, slot) = (conn.clone(), conn.hold.clone());
        self.sessions.spawn(async move {
            let Ok(io) = client_upgrade.await else { return };
            let held = proxy.pre_auth.holder(Some(caller.client.addr));
            let client = metered::socket(io, held);
            let pending = Pending {
                parts,
                body,
                conn,
                caller,
                protocol,
                request_id,
            };
            proxy.after_first_message(&route, client, pending).await;
            drop(slot);
        });
        Ok(response)
    }

    async fn after_first_message(
        &self,
        route: &Route,
        mut client: MeteredSocket,
        pending: Pending,
    ) {
        let credential = match self.read_auth_message(route, &mut client).await {
            Ok(credential) => credential,
            Err(e) => return self.refuse(route, client, &e, CLOSE_UNAUTHORIZED).await,
        };
        let Pending {
            parts,
            body,
            conn,
            caller,
            protocol,
            request_id,
        } = pending;
        let claims = Some(credential.claims.clone());
        let mut permitted = match policy::authorize(&route.config, &self.claims, claims, parts) {
            Ok(permitted) => permitted,
            Err(e) => {
                return self
                    .refuse(route, client, &ProxyError::Auth(e), CLOSE_FORBIDDEN)
                    .await
            }
        };
        // Authenticated: from here only the route's own limits apply.
        client.release();
        let token = credential.token.as_ref();
        let context = (&conn, &caller, &request_id);
        if let Err(e) = self.rewrite(route, &mut permitted, context, token) {
            return self.refuse(route, client, &e, 1011).await;
        }
        ws::prepare_upstream_request(&mut permitted.get_mut().headers, protocol.as_slice());
        let session = permitted.session();
        let request = permitted.map(|parts| Request::from_parts(parts, body));
        let upstream = self
            .open_upstream(route, request, protocol.as_deref())
            .await;
        let (upstream, _in_flight) = match upstream {
            Ok(upstream) => upstream,
            Err(result) => {
                self.metrics.upgrade(&route.labels.name, result);
                let text = match result {
                    "bad_subprotocol" => "upstream refused the subprotocol",
                    _ => "upstream unavailable",
                };
                relay::close(&mut client, 1011, text).await;
                return;
            }
        };
        let upstream = TokioIo::new(upstream);
        let request_id = String::from_utf8_lossy(request_id.as_bytes()).into_owned();
        let key = credential.key.clone();
        self.run_session(route, client, upstream, (&session, key), &request_id)
            .await;
    }

    /// Sends the held upgrade upstream; `Err` is the upgrade metric's result.
    async fn open_upstream(
        &self,
        route: &Route,
        request: Permitted<Request<Incoming>>,
        answered: Option<&str>,
    ) -> Result<(hyper::upgrade::Upgraded, Held), &'static str> {
        let mut response = match route.upstream.forward(request).await {
            Ok(r) if r.status() == StatusCode::SWITCHING_PROTOCOLS => r,
            _ => return Err("upstream_refused"),
        };
        // The client was already told which subprotocol it gets: the upstream must agree,
        // choosing none included (the client would speak a protocol the upstream does not).
        if !ws::chosen_protocol_is(response.headers(), answered) {
            return Err("bad_subprotocol");
        }
        let in_flight = response.extensions_mut().remove::<Arc<InFlight>>();
        let upgraded = hyper::upgrade::on(&mut response).await;
        upgraded
            .map(|u| (u, in_flight))
            .map_err(|_| "upstream_refused")
    }

    async fn read_auth_message(
        &self,
        route: &Route,
        client: &mut MeteredSocket,
    ) -> Result<Credential, ProxyError> {
        let max = route.config.max_message_bytes;
        let first =
            tokio::time::timeout(route.config.first_message_timeout, read_text(client, max));
        let text = match first.await {
            Ok(Ok(text)) => text,
            Ok(Err(NotText::Io(e))) => match metered::over_budget(&e) {
                Some(over) => return Err(over.into()),
                None => return Err(AuthError::Missing.into()),
            },
            Ok(Err(NotText::Other)) | Err(_) => return Err(AuthError::Missing.into()),
        };
        let raw = token::first_message::parse(&text).ok_or(AuthError::Missing)?;
        self.auth.raw(raw).await
    }

    async fn refuse(
        &self,
        route: &Route,
        mut client: MeteredSocket,
        error: &ProxyError,
        code: u16,
    ) {
        let reason = error.count(&self.metrics, &route.labels.name);
        let (code, text, result) = match error {
            ProxyError::OverBudget(OverBudget::Holder) => {
                (1009, "too big before authentication", "pre_auth_budget")
            }
            ProxyError::OverBudget(OverBudget::All | OverBudget::Client) => {
                (1013, "busy, try again later", "pre_auth_budget")
            }
            _ => (code, refusal_text(code), "auth_failed"),
        };
        self.metrics.upgrade(&route.labels.name, result);
        tracing::info!(target: "gatehouse::access", event = "websocket_refused", route = %route.labels.name, reason);
        relay::close(&mut client, code, text).await;
    }
}

fn refusal_text(code: u16) -> &'static str {
    if code == CLOSE_FORBIDDEN {
        "forbidden"
    } else {
        "authentication failed"
    }
}

/// The parts of the upgrade request kept until the first message authenticates.
struct Pending {
    parts: Parts,
    body: Incoming,
    conn: Conn,
    caller: Caller,
    protocol: Option<String>,
    request_id: HeaderValue,
}
