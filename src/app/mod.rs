//! Starting and stopping a gatehouse: build shared state once, bind both listeners, run
//! until told to stop, then drain.
//!
//! `Gatehouse::start` takes a validated `Config` and returns a [`Running`] with the bound
//! addresses, so tests start the proxy in-process on `127.0.0.1:0`. Shutdown is a drain with
//! a deadline: stop accepting and turn `/readyz` to 503, let in-flight requests finish for
//! up to `shutdown.grace`, then cut what is left and stop the background tasks.
//!
//! What a reload may replace lives in a [`Generation`]; what outlives reloads in [`Shared`].

pub(crate) mod admin;
pub mod health;
pub mod logging;
mod open_files;
pub(crate) mod otlp;
pub(crate) mod reload;
pub mod shutdown;

use crate::edge::cert_expiry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::edge::listener::{self, Connections};
use crate::generation::{Current, Generation};
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::shared::Stores;
use admin::Admin;
use reload::Reloader;

/// Why gatehouse could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

pub struct Gatehouse;

/// A started gatehouse.
pub struct Running {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    current: Current,
    shared: Shared,
    stop_accepting: CancellationToken,
    draining: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Gatehouse {
    /// Binds the public and admin listeners and starts serving.
    pub async fn start(config: Config) -> Result<Running, StartError> {
        crate::edge::tls::install_process_default();
        open_files::prepare(config.max_connections, config.http2_max_concurrent_streams);
        let spans = otlp::for_config(&config.trace).map_err(StartError::Setup)?;
        let shared = shared_state(&config, spans.as_ref())?;
        let listener = bind("listener", config.listen_addr).await?;
        let admin_listener = bind("admin listener", config.admin_addr).await?;
        let addr = local_addr(&listener, config.listen_addr)?;
        let admin_addr = local_addr(&admin_listener, config.admin_addr)?;
        let tls = tls_acceptor(&config, &shared)?;
        let grace = config.shutdown_grace;
        let https = config.tls.is_some();
        let generation = Generation::build(config, &shared, None).map_err(StartError::Setup)?;
        shared.key_board.publish(&generation.key_stores);
        let current: Current = Arc::new(ArcSwap::from_pointee(generation));
        let draining = Arc::new(AtomicBool::new(false));
        spawn_admin(admin_listener, &shared, &current, &draining);

        let stop_accepting = CancellationToken::new();
        let connections = Connections::default();
        let accept = listener::accept_loop(
            listener,
            tls,
            current.clone(),
            shared.metrics.clone(),
            connections.clone(),
            stop_accepting.clone(),
        );
        let drain = Drain {
            connections,
            sessions: shared.sessions.clone(),
            websockets: shared.websockets_drain.clone(),
            background: shared.background.clone(),
            grace,
            spans,
        };
        let task = tokio::spawn(async move {
            accept.await;
            drain.run().await;
        });
        tracing::info!(%addr, %admin_addr, tls = https, "gatehouse listening");
        Ok(Running {
            addr,
            admin_addr,
            current,
            shared,
            stop_accepting,
            draining,
            task,
        })
    }
}

/// What outlives every reload: metrics, the stores (their background tasks started), the
/// key client, rate-limit counters, the WebSocket sessions and the drain signals.
fn shared_state(
    config: &Config,
    spans: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
) -> Result<Shared, StartError> {
    let metrics = Arc::new(Metrics::new().map_err(|e| StartError::Setup(e.to_string()))?);
    let background = CancellationToken::new();
    let stores = Arc::new(Stores::build(config, &metrics).map_err(StartError::Setup)?);
    stores.spawn(&background);
    Ok(Shared {
        key_client: crate::http_client::build(Duration::from_secs(5), None)
            .map_err(StartError::Setup)?,
        metrics,
        stores,
        rate_limits: Arc::new(crate::proxy::rate_limit::RateLimits::new()),
        sessions: TaskTracker::new(),
        websockets_drain: CancellationToken::new(),
        background,
        tracer: spans.map(otlp::tracer),
        key_board: crate::auth::key_board::KeyBoard::new(),
    })
}

/// The TLS acceptor when `[tls]` is set, with its certificate reload and expiry watches
/// running until the background tasks stop.
fn tls_acceptor(
    config: &Config,
    shared: &Shared,
) -> Result<Option<tokio_rustls::TlsAcceptor>, StartError> {
    let Some(files) = &config.tls else {
        return Ok(None);
    };
    let background = &shared.background;
    let tls = crate::edge::tls::acceptor(files, background.clone()).map_err(StartError::Setup)?;
    for task in tls.tasks {
        tokio::spawn(task);
    }
    let every = files.reload_interval;
    tokio::spawn(cert_expiry::watch(
        tls.served,
        every,
        &shared.metrics,
        background,
    ));
    Ok(Some(tls.acceptor))
}

/// Serves `/healthz`, `/readyz` and `/metrics` on the admin listener.
fn spawn_admin(
    listener: TcpListener,
    shared: &Shared,
    current: &Current,
    draining: &Arc<AtomicBool>,
) {
    let admin = Admin {
        metrics: shared.metrics.clone(),
        current: current.clone(),
        stores: shared.stores.clone(),
        draining: draining.clone(),
    };
    tokio::spawn(admin::serve(
        listener,
        Arc::new(admin),
        shared.background.clone(),
    ));
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Reloads from `path` on SIGHUP and, when `[reload] watch` is on, whenever the file
    /// or a file it names changes. Runs until the drain stops background work.
    pub fn reload_from(&self, path: PathBuf) {
        let reloader = Reloader::new(path, self.current.clone(), self.shared.clone());
        tokio::spawn(reloader.run(self.shared.background.clone()));
    }

    /// Drains and stops: returns once in-flight requests finished or the grace period ran out.
    pub async fn shutdown(self) {
        self.draining.store(true, Ordering::Release);
        self.stop_accepting.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "shutdown task failed");
        }
    }
}

/// What happens after the listener stops accepting.
struct Drain {
    connections: Connections,
    sessions: TaskTracker,
    /// Cancelled when the grace period is over: WebSockets close with 1001.
    websockets: CancellationToken,
    /// Cancelled last: key refresh, stores, reloads, admin listener.
    background: CancellationToken,
    grace: Duration,
    /// Flushed last, so the spans of the drained requests still go out.
    spans: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drain {
    async fn run(self) {
        let open = self.connections.tracker.len();
        self.connections.closing.cancel();
        self.connections.tracker.close();
        self.sessions.close();
        let finished = async {
            self.connections.tracker.wait().await;
            self.sessions.wait().await;
        };
        tokio::select! {
            _ = finished => tracing::info!(connections = open, "drained"),
            _ = tokio::time::sleep(self.grace) => {
                tracing::warn!(
                    grace_secs = self.grace.as_secs_f64(),
                    connections = self.connections.tracker.len(),
                    websockets = self.sessions.len(),
                    "grace period over; closing what is still open (WebSockets with 1001)"
                );
            }
        }
        self.connections.cut.cancel();
        self.websockets.cancel();
        // Each session sends its close frame under its own short timeout.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.sessions.wait()).await;
        self.background.cancel();
        if let Some(spans) = self.spans {
            otlp::shutdown(spans).await;
        }
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind {
        what: "listener",
        addr,
        source,
    })
}

/// The Tokio runtime `run` and `demo` serve on; `worker_threads = 0` means one per core.
///
/// One thread gets Tokio's current-thread scheduler. The multi-thread scheduler with a
/// single worker still pays for the stealing it cannot do: atomic queues, and two clock
/// reads per batch of tasks to tune the global queue. That was 2 % of a keep-alive
/// request's CPU (`bench/README.md`). The one thread also runs the future `block_on` is
/// given, which only waits for a signal and then for the drain; reloads and span exports
/// are tasks on either scheduler, and their blocking parts go to the blocking pool.
pub fn runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    use tokio::runtime::Builder;
    if one_thread(worker_threads) {
        return Builder::new_current_thread().enable_all().build();
    }
    let mut builder = Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    builder.enable_all().build()
}

/// Whether `worker_threads` comes to one thread: `1`, or `0` on one core (a container
/// limited to one CPU) unless `TOKIO_WORKER_THREADS` asks Tokio for more.
fn one_thread(worker_threads: usize) -> bool {
    match worker_threads {
        0 => {
            std::env::var_os("TOKIO_WORKER_THREADS").is_none()
                && std::thread::available_parallelism().is_ok_and(|n| n.get() == 1)
        }
        n => n == 1,
    }
}

#[cfg(test)]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    #[test]
    fn one_worker_thread_gets_the_current_thread_scheduler() {
        let flavor = |threads| super::runtime(threads).map(|rt| rt.handle().runtime_flavor());
        assert_eq!(flavor(1).ok(), Some(RuntimeFlavor::CurrentThread));
        assert_eq!(flavor(2).ok(), Some(RuntimeFlavor::MultiThread));
    }
}
