//! The accept loop of the public listener and the life of one connection.
//!
//! Each accepted connection is first admitted (see `admission.rs`): over a limit it is
//! answered and closed at once. Accept errors that concern one connection are skipped;
//! others (out of file descriptors) back off for a second instead of spinning. The TLS
//! handshake runs inside the connection task under a timeout, so a slow handshake never
//! blocks the loop. A connection takes its limits and HTTP settings from the generation
//! current when it was accepted, and each of its requests is answered by the generation
//! current when that request arrives.
//!
//! The drain: `closing` asks every connection to finish gracefully (HTTP/1.1 after the
//! response in flight, HTTP/2 with GOAWAY); `cut` drops what is still open at the end of
//! the grace period.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::activity::{Activity, Expiry, Guarded, Tracked};
use crate::admission::{Admission, ConnSlot};
use crate::config::Config;
use crate::generation::Current;
use crate::metrics::Metrics;
use crate::service::{AmbiguousFraming, Conn};

/// Builds the HTTP/1.1 + HTTP/2 server settings; every connection of a generation shares them.
pub fn http_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Ours (activity.rs) starts at the first byte of a head, not when hyper starts
        // waiting for one, so idle keep-alive connections get `idle_timeout` instead.
        .header_read_timeout(None)
        // A head larger than the read buffer is answered 431 by hyper.
        .max_buf_size(config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// The listener's half of the drain.
#[derive(Clone, Default)]
pub struct Connections {
    pub tracker: TaskTracker,
    /// Finish gracefully: no new requests, answer the ones in flight.
    pub closing: CancellationToken,
    /// Drop whatever is still open.
    pub cut: CancellationToken,
}

/// Accepts until `stop` fires; every connection task is spawned on `connections.tracker`.
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    current: Current,
    metrics: Arc<Metrics>,
    connections: Connections,
    stop: CancellationToken,
) {
    let admission = Admission::new(metrics.connections().clone());
    loop {
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
        let generation = current.load_full();
        let config = &generation.config;
        let slot = match admission.admit(
            peer.ip(),
            config.max_connections,
            config.max_connections_per_ip,
        ) {
            Ok(slot) => Arc::new(slot),
            Err(refusal) => {
                metrics.limit_hit(refusal.label());
                if tls.is_none() {
                    admission.refuse(stream, refusal, &connections.tracker);
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            peer,
            https: tls.is_some(),
        };
        let served = Served {
            current: current.clone(),
            http: generation.http.clone(),
            conn,
            slot,
            idle_timeout: config.idle_timeout,
            header_timeout: config.header_read_timeout,
            metrics: metrics.clone(),
            connections: connections.clone(),
        };
        connections.tracker.spawn(served.run(stream, tls.clone()));
    }
}

/// One accepted connection and what it is served with.
struct Served {
    current: Current,
    http: Arc<auto::Builder<TokioExecutor>>,
    conn: Conn,
    slot: Arc<ConnSlot>,
    idle_timeout: Duration,
    /// `header_read_timeout`, which also bounds the TLS handshake.
    header_timeout: Duration,
    metrics: Arc<Metrics>,
    connections: Connections,
}

impl Served {
    async fn run(self, stream: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
        let Some(acceptor) = tls else {
            return self.serve(stream).await;
        };
        let peer = self.conn.peer;
        match tokio::time::timeout(self.header_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls_stream)) => self.serve(tls_stream).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => {
                self.metrics.limit_hit("header_read_timeout");
                tracing::debug!(%peer, "TLS handshake timed out");
            }
        }
    }

    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Served {
            current,
            http,
            conn,
            slot,
            idle_timeout,
            header_timeout,
            metrics,
            connections,
        } = self;
        let activity = Activity::new();
        let tracked = activity.clone();
        let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let in_flight = tracked.begin(request.version());
            let http1 = request.version() <= http::Version::HTTP_11;
            if http1 && tracked.next_is_ambiguous() {
                request.extensions_mut().insert(AmbiguousFraming);
            }
            let (activity, method) = (http1.then(|| tracked.clone()), request.method().clone());
            // Only a request that may upgrade carries the slot on to its session.
            if request.headers().contains_key(http::header::UPGRADE) {
                request.extensions_mut().insert(slot.clone());
            }
            let proxy = current.load().proxy.clone();
            async move {
                let response = proxy.handle(request, conn).await;
                if let Some(activity) = activity {
                    activity.answered(&method, response.status());
                }
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| Guarded::new(body, in_flight)),
                )
            }
        });
        let io = TokioIo::new(Tracked::new(io, activity.clone()));
        let connection = http.serve_connection_with_upgrades(io, service);
        tokio::pin!(connection);
        let mut finishing = false;
        let result = loop {
            tokio::select! {
                result = connection.as_mut() => break result,
                _ = connections.cut.cancelled() => return,
                _ = connections.closing.cancelled(), if !finishing => {
                    connection.as_mut().graceful_shutdown();
                    finishing = true;
                }
                expiry = activity.expired(idle_timeout, header_timeout), if !finishing => {
                    match expiry {
                        Expiry::Idle => {
                            metrics.limit_hit("idle_timeout");
                            connection.as_mut().graceful_shutdown();
                            finishing = true;
                        }
                        Expiry::Head => {
                            metrics.limit_hit("header_read_timeout");
                            tracing::debug!(peer = %conn.peer, "request head not received in time");
                            return;
                        }
                    }
                }
            }
        };
        if let Err(e) = result {
            // Resets, early closes and protocol errors are the client's business, not ours.
            tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
        }
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
