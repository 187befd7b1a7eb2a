//! One request to one endpoint over gatehouse's own connections (`hyper::client::conn`).
//!
//! HTTP/1.1: an idle connection of the endpoint ([`Idle::take`]) or a new one, driven by
//! the request's own task ([`pool`](super::pool)). A request is sent again, on a new
//! connection, only when hyper hands it back unsent: a reused connection that turned out
//! to be closed before a byte of the request was written. Anything else that fails after
//! the request was handed to the connection is the client's answer (502), never a
//! replay: the upstream may have acted on it.
//!
//! An upgrade (WebSocket) takes a connection like any request but never gives it back:
//! its driver is spawned with upgrades on, and after a `101` the socket belongs to the
//! relay.
//!
//! HTTP/2 (`upstream_http2 = true`): one multiplexed connection per endpoint, shared by
//! every request to it (its driver is a task of its own, as multiplexing needs); upgrades
//! still go over HTTP/1.1.

use std::future::poll_fn;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::header::{HOST, UPGRADE};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either};
use hyper::client::conn::{http1, http2, TrySendError};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::connect::{ConnectError, Connector};
use super::endpoints::{Endpoint, Pool};
use super::pool::{Idle, Lease, Limits, PooledBody, Sent};
use super::upload::Progress;
use crate::body::Body;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No connection: the endpoint is ejected.
    #[error(transparent)]
    Connect(ConnectError),
    /// The HTTP/2 preface failed: no connection either.
    #[error("HTTP/2 handshake with the upstream failed")]
    Handshake(#[source] hyper::Error),
    /// The request was handed to a connection and then failed.
    #[error("upstream exchange failed")]
    Failed(#[source] hyper::Error),
    /// A `101` to a request that asked for no upgrade: the upstream now speaks something
    /// nobody agreed on, on a connection that is closed, never reused.
    #[error("the upstream switched protocols unasked")]
    UnaskedSwitch,
}

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
    default_port: u16,
}

impl Connections {
    pub(crate) fn new(connector: Connector, scheme: &Scheme, limits: Limits, http2: bool) -> Self {
        let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
        Self {
            connector,
            limits,
            http2,
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
                self.exchange(lease, request, &endpoint.idle).await
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
                    Some(unsent) if !fresh => request = unsent,
                    _ => return Err(Failure::sent(SendError::Failed(e.into_error()))),
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
    ) -> Result<Response<Body>, TrySendError<Request<Sent>>> {
        let upload = match request.body() {
            Either::Left(body) => body.progress(),
            Either::Right(_) => Progress::none(),
        };
        let mut response = pin!(lease.sender.try_send_request(request));
        let response = poll_fn(|cx| {
            // The connection first: it writes the request and reads the answer.
            lease.drive(cx);
            response.as_mut().poll(cx)
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
        Ok(Lease {
            sender,
            conn: Some(Box::new(conn)),
        })
    }

    async fn send_h2(
        &self,
        endpoint: &Endpoint,
        mut request: Request<Sent>,
    ) -> Result<Response<Body>, Failure> {
        h2_form(&mut request);
        let mut reused = endpoint.idle.h2();
        loop {
            let fresh = reused.is_none();
            let mut sender = match reused.take() {
                Some(sender) => sender,
                None => match self.open_h2(endpoint).await {
                    Ok(sender) => sender,
                    Err(error) => {
                        return Err(Failure {
                            error,
                            unsent: Some(request),
                        })
                    }
                },
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response.map(BodyExt::boxed)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => request = unsent,
                    _ => return Err(Failure::sent(SendError::Failed(e.into_error()))),
                },
            }
        }
    }

    async fn open_h2(&self, endpoint: &Endpoint) -> Result<http2::SendRequest<Sent>, SendError> {
        let io = self.connector.connect(&endpoint.authority).await;
        let io = TokioIo::new(io.map_err(SendError::Connect)?);
        tracing::debug!(endpoint = %endpoint.authority, "opened an upstream HTTP/2 connection");
        let (mut sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(SendError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
            }
        });
        sender.ready().await.map_err(SendError::Handshake)?;
        endpoint.idle.set_h2(sender.clone());
        Ok(sender)
    }
}

/// An upgrade: the connection is driven by a task of its own (the relay takes the socket
/// after a `101`) and is never parked again.
async fn exchange_upgrade(
    lease: Lease,
    request: Request<Sent>,
) -> Result<Response<Body>, TrySendError<Request<Sent>>> {
    let Lease { mut sender, conn } = lease;
    if let Some(conn) = conn {
        tokio::spawn(async move {
            if let Err(e) = (*conn).with_upgrades().await {
                tracing::debug!(error = %e, "upstream upgrade connection ended");
            }
        });
    }
    let response = sender.try_send_request(request).await?;
    Ok(response.map(BodyExt::boxed))
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
            }
        }
    });
}
