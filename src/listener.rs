//! The accept loop of the public listener and the life of one connection.
//!
//! A semaphore caps open connections; its permit moves into the connection task. Accept
//! errors that concern one connection are skipped; others (out of file descriptors) back
//! off for a second instead of spinning. The TLS handshake runs inside the connection task
//! under a timeout, so a slow handshake never blocks the loop. Every connection is
//! registered with hyper-util's `GracefulShutdown`, which the drain uses.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::service::{Conn, Proxy};

/// Limits that shape how connections are served.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
}

/// Builds the HTTP/1.1 + HTTP/2 server settings once; every connection shares them.
pub fn http_builder(limits: ConnLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // A head larger than the read buffer is answered 431 by hyper.
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Accepts until `stop` fires, then returns the `GracefulShutdown` holding every open connection.
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    proxy: Arc<Proxy>,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(http_builder(limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // The semaphore is never closed, so acquire_owned can only fail if it were.
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = slots.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    handle_accept_error(e).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            peer,
            https: tls.is_some(),
        };
        let slot = Arc::new(ConnSlot::new(permit, metrics.connections().clone()));
        let task = serve(
            stream,
            tls.clone(),
            proxy.clone(),
            builder.clone(),
            (conn, slot),
            graceful.watcher(),
            limits,
        );
        tokio::spawn(task);
    }
    graceful
}

/// One client connection's place under `max_connections`. The connection holds it, and so
/// does the WebSocket session it may turn into: an upgraded connection keeps counting (and
/// keeps its slot) until the session ends, not until hyper lets go of it.
pub struct ConnSlot {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl ConnSlot {
    fn new(permit: OwnedSemaphorePermit, open: IntGauge) -> Self {
        open.inc();
        Self {
            _permit: permit,
            open,
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

async fn serve(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    (conn, slot): (Conn, Arc<ConnSlot>),
    watcher: Watcher,
    limits: ConnLimits,
) {
    let Some(acceptor) = tls else {
        return serve_io(stream, proxy, &builder, (conn, slot), watcher).await;
    };
    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => serve_io(tls_stream, proxy, &builder, (conn, slot), watcher).await,
        Ok(Err(e)) => tracing::debug!(peer = %conn.peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(peer = %conn.peer, "TLS handshake timed out"),
    }
}

async fn serve_io<I>(
    io: I,
    proxy: Arc<Proxy>,
    builder: &auto::Builder<TokioExecutor>,
    (conn, slot): (Conn, Arc<ConnSlot>),
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        // Only a request that may upgrade carries the slot on to its session.
        if request.headers().contains_key(http::header::UPGRADE) {
            request.extensions_mut().insert(slot.clone());
        }
        let proxy = proxy.clone();
        async move { Ok::<_, std::convert::Infallible>(proxy.handle(request, conn).await) }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection.into_owned()).await {
        // Resets, early closes and protocol errors are the client's business, not ours.
        tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
    }
}

/// Per-connection accept errors are skipped; anything else (EMFILE) pauses the loop.
async fn handle_accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; pausing 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
