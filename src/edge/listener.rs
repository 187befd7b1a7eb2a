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
//!
//! With `listen.proxy_protocol`, every connection must open with a PROXY header, read under
//! the header clock (which then also bounds the TLS handshake): without one it is closed.
//! From a trusted peer the header's source becomes the connection's hop and is counted
//! against `max_connections_per_ip` (see `admission.rs`).
//!
//! No peer behaviour stops a connection's clocks. A connection asked to close (idle, drain,
//! too many resets) must be gone `close_grace` after it last had a request in flight: an
//! HTTP/2 client that never acknowledges hyper's closing PING would otherwise keep it
//! forever. A connection whose client stops reading for `write_timeout` is dropped
//! (`activity.rs`); an HTTP/2 stream that gets no window for as long is reset
//! (`response_clock.rs`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::Body;
use crate::config::Config;
use crate::edge::activity::{Activity, Tracked};
use crate::edge::admission::{Admission, ConnSlot, Refusal};
use crate::edge::conn_events::{
    grace_over, next, on_expiry, on_trouble, watchers, Event, Next, Step,
};
use crate::edge::proxy_protocol::read_header;
use crate::edge::response_clock::Guarded;
use crate::edge::rewind::Rewind;
use crate::generation::Current;
use crate::metrics::Metrics;
use crate::proxy::service::{AmbiguousFraming, Conn};

/// The listener's half of the drain.
#[derive(Clone, Default)]
pub(crate) struct Connections {
    pub tracker: TaskTracker,
    /// Finish gracefully: no new requests, answer the ones in flight.
    pub closing: CancellationToken,
    /// Drop whatever is still open.
    pub cut: CancellationToken,
}

/// Accepts until `stop` fires; every connection task is spawned on `connections.tracker`.
pub(crate) async fn accept_loop(
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
        let header = ProxyHeader::of(config, peer);
        // A trusted proxy carries many clients: it is not counted per address here.
        let per_ip = if header.believed {
            0
        } else {
            config.max_connections_per_ip
        };
        let slot = match admission.admit(peer.ip(), config.max_connections, per_ip) {
            Ok(slot) => slot,
            Err(refusal) => {
                metrics.limit_hit(refusal.label());
                if tls.is_none() {
                    admission.refuse(stream, refusal, &connections.tracker);
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let served = Served {
            current: current.clone(),
            http: generation.http.clone(),
            peer,
            hop: peer.ip(),
            vouches: true,
            https: tls.is_some(),
            slot,
            clocks: Clocks::of(config),
            metrics: metrics.clone(),
            connections: connections.clone(),
            header,
            admission: admission.clone(),
        };
        connections.tracker.spawn(served.run(stream, tls.clone()));
    }
}

/// One accepted connection and what it is served with.
struct Served {
    current: Current,
    http: Arc<auto::Builder<TokioExecutor>>,
    peer: SocketAddr,
    /// What sent us the requests: the peer, or a trusted peer's PROXY header source.
    hop: IpAddr,
    /// Whether the hop may vouch for the client in `X-Forwarded-*`: not when a trusted
    /// balancer's PROXY header named no address.
    vouches: bool,
    https: bool,
    slot: ConnSlot,
    clocks: Clocks,
    metrics: Arc<Metrics>,
    connections: Connections,
    header: ProxyHeader,
    admission: Arc<Admission>,
}

/// Whether a connection must open with a PROXY header, and what comes of it.
#[derive(Clone, Copy)]
struct ProxyHeader {
    required: bool,
    /// The peer is a trusted proxy: its header's source is the client.
    believed: bool,
    /// `max_connections_per_ip`, for the header's source.
    max_per_ip: usize,
}

impl ProxyHeader {
    fn of(config: &Config, peer: std::net::SocketAddr) -> Self {
        let trust = &config.client_trust;
        Self {
            required: trust.proxy_protocol,
            believed: trust.trusted_proxies.contains(peer.ip()),
            max_per_ip: config.max_connections_per_ip,
        }
    }
}

/// A connection's time limits, from the generation it was accepted under.
#[derive(Clone, Copy)]
struct Clocks {
    idle: Duration,
    /// `header_read_timeout`, which also bounds the TLS handshake.
    header: Duration,
    close_grace: Duration,
    write: Duration,
    max_resets: u32,
}

impl Clocks {
    fn of(config: &Config) -> Self {
        Self {
            idle: config.idle_timeout,
            header: config.header_read_timeout,
            close_grace: config.close_grace,
            write: config.write_timeout,
            max_resets: config.http2_max_resets,
        }
    }

    fn activity(&self) -> crate::edge::activity::Clocks {
        crate::edge::activity::Clocks {
            idle: self.idle,
            header: self.header,
            write: self.write,
        }
    }
}

impl Served {
    async fn run(mut self, stream: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
        // One clock for the PROXY header and the TLS handshake together.
        let deadline = Instant::now() + self.clocks.header;
        // Before its first request a connection holds nothing the drain must wait for: a
        // PROXY header or TLS handshake still arriving when the drain starts ends there,
        // or one client that sent half a ClientHello would hold every shutdown for the
        // whole grace period.
        let closing = self.connections.closing.clone();
        let header = tokio::select! {
            biased;
            () = closing.cancelled() => return,
            header = self.proxy_header(stream, deadline) => header,
        };
        let Some(stream) = header else {
            return;
        };
        let Some(acceptor) = tls else {
            return self.serve(stream).await;
        };
        let peer = self.peer;
        let accepted = tokio::select! {
            biased;
            () = closing.cancelled() => return,
            accepted = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => accepted,
        };
        match accepted {
            Ok(Ok(tls_stream)) => self.serve(tls_stream).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => {
                self.metrics.limit_hit("header_read_timeout");
                tracing::debug!(%peer, "TLS handshake timed out");
            }
        }
    }

    /// Reads the PROXY header when one is required; `None` when the connection is closed
    /// (no valid header in time, or its source over `max_connections_per_ip`).
    async fn proxy_header(
        &mut self,
        mut stream: TcpStream,
        deadline: Instant,
    ) -> Option<Rewind<TcpStream>> {
        if !self.header.required {
            return Some(Rewind::new(Bytes::new(), stream));
        }
        let peer = self.peer;
        let (source, rest) = match tokio::time::timeout_at(deadline, read_header(&mut stream)).await
        {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                self.metrics.limit_hit("proxy_protocol");
                tracing::debug!(%peer, error = %e, "no valid PROXY header; closing");
                return None;
            }
            Err(_) => {
                self.metrics.limit_hit("header_read_timeout");
                tracing::debug!(%peer, "PROXY header not received in time");
                return None;
            }
        };
        let stream = Rewind::new(rest, stream);
        if source.is_none() {
            // `UNKNOWN`, `LOCAL`, a unix socket: the balancer does not say who the client
            // is, and the HTTP headers behind an L4 balancer are the client's own, so its
            // `X-Forwarded-For` must not choose the address. The peer is the client.
            self.vouches = false;
        }
        let Some(source) = source.filter(|_| self.header.believed) else {
            return Some(stream);
        };
        self.hop = source.ip().to_canonical();
        if self
            .slot
            .count_ip(self.hop, self.header.max_per_ip)
            .is_err()
        {
            self.metrics.limit_hit(Refusal::PerIp.label());
            if !self.https {
                let tracker = &self.connections.tracker;
                self.admission.refuse(stream, Refusal::PerIp, tracker);
            }
            return None;
        }
        Some(stream)
    }

    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let conn = Conn {
            peer: self.peer,
            hop: self.hop,
            vouches: self.vouches,
            https: self.https,
            hold: Arc::new(self.slot),
            remembered: Arc::default(),
        };
        let Served {
            current,
            http,
            clocks,
            metrics,
            connections,
            ..
        } = self;
        let activity = Activity::new(clocks.activity());
        let service = per_request(current, conn.clone(), activity.clone(), clocks.write);
        let io = TokioIo::new(Tracked::new(io, activity.clone()));
        let connection = http.serve_connection_with_upgrades(io, service);
        tokio::pin!(connection);
        // Set once the connection was asked to close: when it must be gone by.
        let mut closing: Option<Instant> = None;
        let drain = (&connections.closing, &connections.cut);
        let result = loop {
            let mut watch = watchers(&activity, drain, closing, clocks.max_resets);
            // In order, and without select!'s random start: the connection is what runs.
            let event = tokio::select! {
                biased;
                result = connection.as_mut() => break result,
                Some(event) = watch.next() => event,
            };
            drop(watch);
            let step = match event {
                Event::Cut => Step::Drop,
                Event::Close => Step::Close,
                Event::GraceOver => {
                    grace_over(&activity, &metrics, &conn, &mut closing, clocks.close_grace)
                }
                Event::Trouble(trouble) => on_trouble(trouble, &metrics, &conn),
                Event::Expiry(expiry) => on_expiry(expiry, &metrics, &conn),
            };
            match next(step, &mut closing, clocks.close_grace) {
                Next::Carry => {}
                Next::Shutdown => connection.as_mut().graceful_shutdown(),
                Next::Stop => return,
            }
        };
        if let Err(e) = result {
            // Resets, early closes and protocol errors are the client's business, not ours.
            tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
        }
    }
}

/// The service hyper calls for each request of a connection: the generation current when
/// the request arrives answers it, and the connection's activity clocks see it begin and
/// end.
fn per_request(
    current: Current,
    conn: Conn,
    tracked: Arc<Activity>,
    write: Duration,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = hyper::Response<Guarded<Body>>,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
       + Send
       + 'static {
    service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let in_flight = tracked.begin(request.version());
        let http1 = request.version() <= http::Version::HTTP_11;
        if http1 && tracked.next_is_ambiguous() {
            request.extensions_mut().insert(AmbiguousFraming);
        }
        let (activity, method) = (http1.then(|| tracked.clone()), request.method().clone());
        let proxy = current.load().proxy.clone();
        // Boxed: the request's future is ~6 KB, and HTTP/2 spawns it as a task per
        // stream, which moved it whole several times (6 % of an HTTP/2 request's
        // instructions); HTTP/1.1 copied it into hyper's dispatcher once as well. Pinned
        // where it is made, inside the box: awaited as it is (or wrapped in a `Map`), it
        // was copied there once more.
        let conn = conn.clone();
        Box::pin(async move {
            let response = std::pin::pin!(proxy.handle(request, conn)).await;
            if let Some(activity) = activity {
                activity.answered(&method, response.status());
            }
            Ok::<_, std::convert::Infallible>(
                response.map(|body| Guarded::new(body, in_flight, write)),
            )
        })
    })
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
