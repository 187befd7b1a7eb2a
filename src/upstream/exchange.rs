//! One request to one endpoint over gatehouse's own connections (`hyper::client::conn`).
//!
//! HTTP/1.1: an idle connection of the endpoint ([`Idle::take`]) or a new one, driven by
//! the request's own task ([`pool`](super::pool)). A request is sent again, on the next
//! idle connection or a new one, only when hyper hands it back unsent: a reused connection
//! that turned out to be closed before a byte of the request was written. Anything else
//! that fails after the request was handed to the connection is the client's answer
//! (502), never a replay: the upstream may have acted on it.
//!
//! An upgrade (WebSocket) takes a connection like any request but never gives it back:
//! its driver is spawned with upgrades on, and after a `101` the socket belongs to the
//! relay.
//!
//! HTTP/2 (`upstream_http2 = true`): multiplexed connections shared by every request to
//! the endpoint (each driven by a task of its own, as multiplexing needs), with stream
//! slots and windows sized so one client cannot hold what the others need
//! ([`multiplex`](super::multiplex)); upgrades still go over HTTP/1.1.

use std::future::poll_fn;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Waker};
use std::time::Duration;

use http::header::{CONTENT_LENGTH, HOST, UPGRADE};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either};
use hyper::client::conn::{http1, http2, TrySendError};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::connect::{ConnectError, Connector};
use super::endpoints::{Endpoint, Pool};
use super::multiplex::{self, Caps, Held, Opened};
use super::pool::{Idle, Lease, Limits, PooledBody, Sent};
use super::preface::Preface;
use super::upload::Progress;
use crate::body::{Body, BodyError};

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No connection: the endpoint is ejected.
    #[error(transparent)]
    Connect(ConnectError),
    /// The HTTP/2 preface failed: no connection either.
    #[error("HTTP/2 handshake with the upstream failed")]
    Handshake(#[source] hyper::Error),
    /// The upstream sent no HTTP/2 `SETTINGS` first, within `connect_timeout`.
    #[error("the upstream did not answer the HTTP/2 preface with SETTINGS")]
    Preface,
    /// The header list is larger than the upstream's `SETTINGS_MAX_HEADER_LIST_SIZE`: sent,
    /// the upstream would close the connection and every other request on it with it.
    #[error("header list of {size} bytes, the upstream accepts {limit}")]
    HeaderListTooLarge { size: usize, limit: u32 },
    /// The request was handed to a connection and then failed.
    #[error("upstream exchange failed")]
    Failed(#[source] hyper::Error),
    /// A `101` to a request that asked for no upgrade: the upstream now speaks something
    /// nobody agreed on, on a connection that is closed, never reused.
    #[error("the upstream switched protocols unasked")]
    UnaskedSwitch,
}

/// hyper's failed exchange, with the request when it was never written. Boxed: it holds
/// the whole request, and the common `Ok` moves several times on its way out.
type Unsent = Box<TrySendError<Request<Sent>>>;

/// A failed exchange, with the request when no connection ever took it (connect or
/// HTTP/2 handshake failed): the caller may send it elsewhere without having copied it.
pub(crate) struct Failure {
    pub(crate) error: SendError,
    pub(crate) unsent: Option<Request<Sent>>,
}

impl Failure {
    fn sent(error: SendError) -> Self {
        Self {
            error,
            unsent: None,
        }
    }
}

/// A route's way to its endpoints: how it connects, what it keeps idle, which protocol.
pub(crate) struct Connections {
    connector: Connector,
    limits: Limits,
    http2: bool,
    caps: Caps,
    default_port: u16,
}

impl Connections {
    pub(crate) fn new(
        connector: Connector,
        scheme: &Scheme,
        limits: Limits,
        http2: Option<Caps>,
    ) -> Self {
        let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
        Self {
            connector,
            limits,
            http2: http2.is_some(),
            caps: http2.unwrap_or(Caps {
                streams: 1,
                connections: 1,
            }),
            default_port,
        }
    }

    /// Sends `request` (absolute URI) to `endpoint` and returns the response headers; the
    /// body streams on and, for HTTP/1.1, parks the connection when it ends.
    pub(crate) async fn send(
        &self,
        endpoint: &Arc<Endpoint>,
        mut request: Request<Sent>,
    ) -> Result<Response<Body>, Failure> {
        let upgrade = request.headers().contains_key(UPGRADE);
        // What is not the common case (a reused HTTP/1.1 connection) is boxed: the
        // request's future is moved whole, and these would make it several times larger.
        if self.http2 && !upgrade {
            return Box::pin(self.send_h2(endpoint, request)).await;
        }
        origin_form(&mut request, endpoint.host(self.default_port));
        let mut reused = endpoint.idle.take(self.limits);
        loop {
            let fresh = reused.is_none();
            let lease = match reused.take() {
                Some(lease) => lease,
                None => match Box::pin(self.open_h1(endpoint)).await {
                    Ok(lease) => lease,
                    Err(error) => {
                        return Err(Failure {
                            error,
                            unsent: Some(request),
                        })
                    }
                },
            };
            let sent = if upgrade {
                Box::pin(exchange_upgrade(lease, request)).await
            } else {
                // Pinned where it is made, not copied (see `Proxy::handle`).
                std::pin::pin!(self.exchange(lease, request, &endpoint.idle)).await
            };
            match sent {
                Ok(response)
                    if response.status() == StatusCode::SWITCHING_PROTOCOLS && !upgrade =>
                {
                    return Err(Failure::sent(SendError::UnaskedSwitch))
                }
                Ok(response) => return Ok(response),
                Err(mut e) => match e.take_message() {
                    // Provably never written: the connection was dead before it took it.
                    Some(unsent) if !fresh => {
                        request = unsent;
                        reused = endpoint.idle.take(self.limits);
                    }
                    _ => return Err(Failure::sent(SendError::Failed((*e).into_error()))),
                },
            }
        }
    }

    /// Sends on a connection driven by this task until the response headers arrive; the
    /// body drives it from then on.
    async fn exchange(
        &self,
        mut lease: Lease,
        request: Request<Sent>,
        idle: &Arc<Idle>,
    ) -> Result<Response<Body>, Unsent> {
        let upload = match request.body() {
            Either::Left(body) => body.progress(),
            Either::Right(_) => Progress::none(),
        };
        let mut response = pin!(lease.sender.try_send_request(request));
        let response = poll_fn(|cx| {
            // The connection first: it writes the request and reads the answer.
            lease.drive(cx);
            // Only that connection, driven just above by this task, answers: the answer
            // needs no waker, and this task's would be woken from inside this very poll,
            // which then runs the whole connection task once more for nothing.
            response
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
        })
        .await?;
        let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        let home = (upload.complete() && !switched).then(|| idle.clone());
        let limits = self.limits;
        Ok(response.map(|body| PooledBody::new(body, lease, home, limits).boxed()))
    }

    async fn open_h1(&self, endpoint: &Endpoint) -> Result<Lease, SendError> {
        let io = self.connector.connect(&endpoint.authority).await;
        let io = TokioIo::new(io.map_err(SendError::Connect)?);
        tracing::debug!(endpoint = %endpoint.authority, "opened an upstream connection");
        // Only builds the state machine: no I/O happens here.
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(SendError::Handshake)?;
        Ok(Lease::new(sender, conn))
    }

    /// Sends on a stream slot of one of the endpoint's HTTP/2 connections
    /// ([`multiplex`](super::multiplex)); the slot stays taken until both bodies are gone.
    async fn send_h2(
        &self,
        endpoint: &Endpoint,
        mut request: Request<Sent>,
    ) -> Result<Response<Body>, Failure> {
        h2_form(&mut request);
        loop {
            let lease = endpoint
                .h2
                .lease(self.caps, || self.open_h2(endpoint))
                .await;
            let lease = match lease {
                Ok(lease) => lease,
                Err(error) => {
                    return Err(Failure {
                        error,
                        unsent: Some(request),
                    })
                }
            };
            if let Some(limit) = lease.max_header_list {
                let size = header_list_size(&request);
                if size > usize::try_from(limit).unwrap_or(usize::MAX) {
                    return Err(Failure::sent(SendError::HeaderListTooLarge { size, limit }));
                }
            }
            let multiplex::Lease {
                mut sender,
                slot,
                fresh,
                ..
            } = lease;
            let held = request.map(|body| Held::new(body, slot.clone()));
            match sender.try_send_request(held).await {
                Ok(response) => {
                    let body = |body| Held::new(body, slot).map_err(BodyError::Upstream).boxed();
                    return Ok(response.map(body));
                }
                Err(mut e) => match e.take_message() {
                    // Provably never written: the connection was closing before it took it.
                    Some(unsent) if !fresh => {
                        endpoint.h2.retire(unsent.body().slot());
                        request = unsent.map(Held::into_inner);
                    }
                    _ => return Err(Failure::sent(SendError::Failed(e.into_error()))),
                },
            }
        }
    }

    async fn open_h2(&self, endpoint: &Endpoint) -> Result<Opened, SendError> {
        let io = self.connector.connect(&endpoint.authority).await;
        let (io, preface) = Preface::new(io.map_err(SendError::Connect)?);
        tracing::debug!(endpoint = %endpoint.authority, "opened an upstream HTTP/2 connection");
        let (mut sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(connection_window(self.caps.streams))
            .handshake(TokioIo::new(io))
            .await
            .map_err(SendError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
            }
        });
        // The limits must be known before the first request goes out; the upstream sends
        // them at once (RFC 9113 §3.4), so this costs one round trip per connection.
        let settings = tokio::time::timeout(self.connector.timeout(), preface).await;
        let Ok(Ok(Ok(settings))) = settings else {
            return Err(SendError::Preface);
        };
        sender.ready().await.map_err(SendError::Handshake)?;
        Ok(Opened {
            sender,
            max_streams: settings.max_concurrent_streams,
            max_header_list: settings.max_header_list_size,
        })
    }
}

/// Each stream's receive window: what one stream whose client stopped reading can make
/// gatehouse hold. Large enough for ~500 MB/s per stream at 1 ms round trip.
const STREAM_WINDOW: u32 = 512 * 1024;

/// A connection's receive window: every slot's stream window, so the streams whose clients
/// stopped reading can never take the window the others need (h2 gives a stream's data
/// back to the connection only once it is read or the stream is gone). At most
/// 1000 × 512 KiB, below HTTP/2's 2³¹ − 1.
fn connection_window(streams: usize) -> u32 {
    let streams = u32::try_from(streams).unwrap_or(u32::MAX);
    STREAM_WINDOW.saturating_mul(streams).min(i32::MAX as u32)
}

/// The request's header list as HTTP/2 counts it against `SETTINGS_MAX_HEADER_LIST_SIZE`
/// (RFC 9113 §6.5.2): name, value and 32 bytes per field, the pseudo-headers hyper sends
/// included, and the `content-length` hyper adds to a body of known size.
fn header_list_size<B: http_body::Body>(request: &Request<B>) -> usize {
    const PER_FIELD: usize = 32;
    let uri = request.uri();
    let pseudo = [
        (":method".len(), request.method().as_str().len()),
        (":scheme".len(), uri.scheme_str().map_or(0, str::len)),
        (
            ":authority".len(),
            uri.authority().map_or(0, |a| a.as_str().len()),
        ),
        (
            ":path".len(),
            uri.path_and_query().map_or(1, |p| p.as_str().len()),
        ),
    ];
    let mut size: usize = pseudo.iter().map(|(n, v)| n + v + PER_FIELD).sum();
    size += request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + PER_FIELD)
        .sum::<usize>();
    // hyper's rule: a known length, unless it is 0 for a method without a payload meaning.
    let bodiless_method = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
    );
    let added_length = request
        .body()
        .size_hint()
        .exact()
        .filter(|len| *len != 0 || !bodiless_method);
    if let (Some(len), false) = (added_length, request.headers().contains_key(CONTENT_LENGTH)) {
        let digits = len.checked_ilog10().map_or(1, |d| d as usize + 1);
        size += "content-length".len() + digits + PER_FIELD;
    }
    size
}

/// An upgrade: the connection is driven by a task of its own (the relay takes the socket
/// after a `101`) and is never parked again.
async fn exchange_upgrade(lease: Lease, request: Request<Sent>) -> Result<Response<Body>, Unsent> {
    let Lease {
        mut sender, conn, ..
    } = lease;
    if let Some(conn) = conn {
        tokio::spawn(async move {
            if let Err(e) = (*conn).with_upgrades().await {
                tracing::debug!(error = %e, "upstream upgrade connection ended");
            }
        });
    }
    let response = sender.try_send_request(request).await?;
    Ok(response.map(|body| body.map_err(BodyError::Upstream).boxed()))
}

/// HTTP/1.1 wants the origin form (`/path?query`) and a `Host`: the endpoint's, unless the
/// route set one (a discovered endpoint is asked by its service name).
fn origin_form(request: &mut Request<Sent>, host: Option<http::HeaderValue>) {
    if let Some(host) = host {
        request.headers_mut().entry(HOST).or_insert(host);
    }
    let target = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(target);
}

/// HTTP/2 carries the host as `:authority`: a `Host` the route set replaces the URI's
/// authority (the endpoint's address, which we connect to anyway), so the two never differ.
fn h2_form(request: &mut Request<Sent>) {
    *request.version_mut() = Version::HTTP_2;
    let Some(host) = request.headers_mut().remove(HOST) else {
        return;
    };
    let Ok(authority) = http::uri::Authority::try_from(host.as_bytes()) else {
        return;
    };
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.authority = Some(authority);
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

/// Closes, every `idle_timeout / 2` (1 to 30 seconds), the idle connections of `pool`'s
/// endpoints that timed out or that their upstream closed. Ends with the pool.
pub(crate) fn spawn_sweeper(pool: &Arc<Pool>, limits: Limits) {
    let weak: Weak<Pool> = Arc::downgrade(pool);
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let every = (limits.idle_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
    handle.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(pool) = weak.upgrade() else { return };
            for endpoint in pool.endpoints().iter() {
                endpoint.idle.sweep(limits);
                endpoint.h2.sweep(limits.idle_timeout);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_list_is_counted_as_http2_counts_it() {
        let request = Request::post("http://up:8080/a?b")
            .header("x-one", "12345")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"abc")))
            .unwrap();
        // :method POST, :scheme http, :authority up:8080, :path /a?b, x-one, and the
        // content-length: 3 hyper adds; 32 bytes each on top of name and value.
        let want = (7 + 4) + (7 + 4) + (10 + 7) + (5 + 4) + (5 + 5) + (14 + 1) + 6 * 32;
        assert_eq!(header_list_size(&request), want);
        let bodiless =
            Request::get("http://up/").body(http_body_util::Empty::<bytes::Bytes>::new());
        // An empty GET gets no content-length from hyper.
        assert_eq!(
            header_list_size(&bodiless.unwrap()),
            (7 + 3) + (7 + 4) + (10 + 2) + (5 + 1) + 4 * 32
        );
    }
}
