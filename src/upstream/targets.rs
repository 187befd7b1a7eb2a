//! Which endpoint a request goes to: a route's [`Pool`] with its affinity [`Sealer`].
//!
//! [`Targets::plan`] reads the request once (a sealed `id` pins it, a negotiate is marked
//! for sealing), [`Targets::next`] picks the endpoint for each attempt, [`Targets::aim`]
//! points the request at it and [`Targets::finish`] seals a negotiate answer and ties the
//! endpoint's outstanding count to the response.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT_ENCODING, HOST};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body::Frame;
use http_body_util::BodyExt;

use super::affinity::{Located, Sealer};
use super::balance;
use super::endpoints::{Endpoint, InFlight, Pool};
use super::negotiate;
use crate::body::{Body, BodyError};
use crate::config::upstream::Affinity;
use crate::config::RouteConfig;
use crate::upstream::error::UpstreamError;

pub(crate) struct Targets {
    pub(crate) pool: Arc<Pool>,
    sealer: Option<Arc<Sealer>>,
    /// One listed endpoint and no affinity: requests go where `rewrite` aimed them.
    single: bool,
}

/// What [`Targets::plan`] learned about one request.
pub(crate) struct Plan {
    /// The endpoint a sealed `id` names; such a request goes nowhere else.
    pinned: Option<Arc<Endpoint>>,
    negotiate: bool,
}

impl Targets {
    pub(crate) fn new(
        route: &RouteConfig,
        ejections: prometheus::IntCounter,
    ) -> Result<Self, String> {
        let config = &route.endpoints;
        let sealer = match (config.affinity, &config.affinity_key_file) {
            (Affinity::None, _) => None,
            (Affinity::SignalR, Some(file)) => {
                let key = crate::files::read(file)
                    .map_err(|e| format!("reading {}: {e}", file.display()))?;
                if key.trim_ascii().len() < 16 {
                    return Err(format!("{}: at least 16 bytes of key", file.display()));
                }
                Some(Arc::new(Sealer::new(key.trim_ascii())))
            }
            (Affinity::SignalR, None) => Some(Arc::new(Sealer::derived(&route.path))),
        };
        let tag = |a: &Authority| super::discovery::tag_of(sealer.as_deref(), a);
        let set = config
            .authorities
            .iter()
            .map(|a| Arc::new(Endpoint::new(a.clone(), tag(a))))
            .collect();
        let discovered = config.resolve_every.zip(config.authorities.first());
        let host = discovered.and_then(|(_, name)| HeaderValue::from_str(name.as_str()).ok());
        let pool = Arc::new(Pool::new(config.scheme.clone(), host, set).counting(ejections));
        if let Some((every, name)) = discovered {
            super::discovery::spawn(&pool, name.clone(), every, sealer.clone());
        }
        let single = config.authorities.len() == 1 && discovered.is_none() && sealer.is_none();
        Ok(Self {
            pool,
            sealer,
            single,
        })
    }

    pub(crate) fn is_single(&self) -> bool {
        self.single
    }

    /// Reads the affinity of a request already rewritten for the upstream: a sealed `id`
    /// is unsealed in the query and pins the request; an unknown one is refused (404).
    pub(crate) fn plan(&self, parts: &mut Parts) -> Result<Plan, UpstreamError> {
        let Some(sealer) = &self.sealer else {
            return Ok(Plan {
                pinned: None,
                negotiate: false,
            });
        };
        let negotiate = negotiate::is_negotiate(&parts.method, parts.uri.path());
        if negotiate {
            // The answer is read and rewritten: it must come as plain JSON.
            parts.headers.remove(ACCEPT_ENCODING);
        }
        let pinned = match sealer.locate(parts.uri.query()) {
            Located::Free => None,
            Located::Unknown => return Err(UpstreamError::NoConnection),
            Located::At(tag, cut) => {
                let set = self.pool.endpoints();
                let endpoint = set.iter().find(|e| e.tag == tag);
                let endpoint = endpoint.ok_or(UpstreamError::NoConnection)?.clone();
                let target = unsealed_target(&parts.uri, cut)?;
                let mut uri = std::mem::take(&mut parts.uri).into_parts();
                uri.path_and_query = Some(target);
                parts.uri =
                    Uri::from_parts(uri).map_err(|e| UpstreamError::BadRequest(e.into()))?;
                Some(endpoint)
            }
        };
        Ok(Plan { pinned, negotiate })
    }

    /// The endpoint for the next attempt; `None` when a pinned request already had its one.
    pub(crate) fn next(&self, plan: &Plan, tried: &[Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
        match &plan.pinned {
            Some(_) if !tried.is_empty() => None,
            // Affinity wins over health: only that endpoint knows the connection.
            Some(pinned) => Some(pinned.clone()),
            None => balance::pick(&self.pool, tried),
        }
    }

    /// Whether a request that could not connect to `tried` may go to another endpoint.
    pub(crate) fn may_retry(&self, plan: &Plan, tried: &[Arc<Endpoint>]) -> bool {
        plan.pinned.is_none() && balance::has_untried(&self.pool, tried)
    }

    /// Points the request at `endpoint`, `Host` included: the route's, or none, so that the
    /// connection writes the endpoint's own. A request handed back by an endpoint that
    /// refused still carries that endpoint's `Host`, which must not reach the next one.
    pub(crate) fn aim<B>(
        &self,
        request: &mut Request<B>,
        endpoint: &Endpoint,
    ) -> Result<(), UpstreamError> {
        let mut uri = std::mem::take(request.uri_mut()).into_parts();
        uri.scheme = Some(self.pool.scheme.clone());
        uri.authority = Some(endpoint.authority.clone());
        *request.uri_mut() =
            Uri::from_parts(uri).map_err(|e| UpstreamError::BadRequest(e.into()))?;
        match &self.pool.host {
            Some(host) => request.headers_mut().insert(HOST, host.clone()),
            None => request.headers_mut().remove(HOST),
        };
        Ok(())
    }

    /// The client's response: a negotiate answer sealed for its endpoint; the endpoint's
    /// outstanding count held by the body (and, for a `101`, by the WebSocket session,
    /// which takes the [`InFlight`] from the response's extensions).
    pub(crate) async fn finish(
        &self,
        plan: &Plan,
        response: Response<Body>,
        in_flight: InFlight,
    ) -> Result<Response<Body>, UpstreamError> {
        let (mut parts, body) = match (&self.sealer, plan.negotiate) {
            (Some(sealer), true) => {
                let tag = in_flight.endpoint().tag;
                Box::pin(negotiate::seal_response(response, sealer, &tag))
                    .await
                    .map_err(UpstreamError::Negotiate)?
                    .into_parts()
            }
            _ => response.into_parts(),
        };
        let hold = if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            let shared = Arc::new(in_flight);
            parts.extensions.insert(shared.clone());
            Hold::Shared(shared)
        } else {
            Hold::Owned(in_flight)
        };
        let body = Counted { body, _hold: hold };
        Ok(Response::from_parts(parts, body.boxed()))
    }
}

/// The request target with `cut` (bytes of the query: a seal) taken out, in one copy.
fn unsealed_target(uri: &Uri, cut: std::ops::Range<usize>) -> Result<PathAndQuery, UpstreamError> {
    let target = uri.path_and_query().map_or("", PathAndQuery::as_str);
    let query_at = target.len() - uri.query().map_or(0, str::len);
    let (start, end) = (query_at + cut.start, query_at + cut.end);
    let (head, tail) = target
        .get(..start)
        .zip(target.get(end..))
        .ok_or(UpstreamError::NoConnection)?;
    let mut bytes = BytesMut::with_capacity(head.len() + tail.len());
    bytes.extend_from_slice(head.as_bytes());
    bytes.extend_from_slice(tail.as_bytes());
    PathAndQuery::from_maybe_shared(bytes.freeze()).map_err(|e| UpstreamError::BadRequest(e.into()))
}

/// A response body that keeps its endpoint's request outstanding until it is dropped.
struct Counted {
    body: Body,
    _hold: Hold,
}

/// A `101`'s count is shared with the WebSocket session, which outlives the body.
enum Hold {
    Owned(#[allow(dead_code)] InFlight),
    Shared(#[allow(dead_code)] Arc<InFlight>),
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
