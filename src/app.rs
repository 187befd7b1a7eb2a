//! Starting and stopping a gatehouse: build shared state once, bind both listeners, run
//! until told to stop, then drain.
//!
//! `Gatehouse::start` takes a validated `Config` and returns a [`Running`] with the bound
//! addresses, so tests start the proxy in-process on `127.0.0.1:0`. Shutdown is a drain with
//! a deadline: stop accepting and turn `/readyz` to 503, let in-flight requests finish for
//! up to `shutdown.grace`, then cut what is left and stop the background tasks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, Admin};
use crate::config::Config;
use crate::introspect::Introspector;
use crate::jwks::KeyStore;
use crate::listener::{self, ConnLimits};
use crate::metrics::Metrics;
use crate::service::Proxy;
use crate::store::Stores;
use crate::validate::Validator;

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
    stop_accepting: CancellationToken,
    draining: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Gatehouse {
    /// Binds the public and admin listeners and starts serving.
    pub async fn start(config: Config) -> Result<Running, StartError> {
        let metrics = Arc::new(Metrics::new().map_err(|e| StartError::Setup(e.to_string()))?);
        let background = CancellationToken::new();
        let issuers = key_stores(&config, &metrics, &background)?;
        let introspector = Introspector::new(&config.introspections).map_err(StartError::Setup)?;
        let cache = config.token_cache_entries;
        let validator = Validator::new(issuers.clone(), introspector, cache, metrics.clone());
        let stores = Arc::new(Stores::build(&config, &metrics).map_err(StartError::Setup)?);
        stores.spawn(&background);
        let drain = CancellationToken::new();
        let proxy = Proxy::new(&config, validator, &stores, metrics.clone(), drain.clone())
            .map_err(StartError::Setup)?;
        let proxy = Arc::new(proxy);
        let sessions = proxy.sessions.clone();

        let listener = bind("listener", config.listen_addr).await?;
        let admin_listener = bind("admin listener", config.admin_addr).await?;
        let addr = local_addr(&listener, config.listen_addr)?;
        let admin_addr = local_addr(&admin_listener, config.admin_addr)?;
        let tls = match &config.tls {
            Some(files) => {
                let (acceptor, watch) =
                    crate::tls::acceptor(files, background.clone()).map_err(StartError::Setup)?;
                tokio::spawn(watch);
                Some(acceptor)
            }
            None => None,
        };
        let draining = Arc::new(AtomicBool::new(false));
        let token = config.admin_token.clone();
        let admin = Admin {
            metrics: metrics.clone(),
            issuers,
            stores,
            token,
            draining: draining.clone(),
        };
        tokio::spawn(admin::serve(
            admin_listener,
            Arc::new(admin),
            background.clone(),
        ));

        let limits = ConnLimits {
            max_connections: config.max_connections,
            max_header_bytes: config.max_header_bytes,
            header_read_timeout: config.header_read_timeout,
        };
        let stop_accepting = CancellationToken::new();
        let accept = listener::accept_loop(
            listener,
            tls,
            proxy,
            limits,
            metrics,
            stop_accepting.clone(),
        );
        let drain = Drain {
            sessions,
            websockets: drain,
            background,
            grace: config.shutdown_grace,
        };
        let task = tokio::spawn(async move { drain.run(accept.await).await });
        tracing::info!(%addr, %admin_addr, tls = config.tls.is_some(), "gatehouse listening");
        Ok(Running {
            addr,
            admin_addr,
            stop_accepting,
            draining,
            task,
        })
    }
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
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

/// One key store per issuer, each refreshing in the background until `stop`.
fn key_stores(
    config: &Config,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
) -> Result<Vec<Arc<KeyStore>>, StartError> {
    let client =
        crate::http_client::build(Duration::from_secs(5), None).map_err(StartError::Setup)?;
    let stores: Vec<Arc<KeyStore>> = config
        .issuers
        .iter()
        .map(|i| KeyStore::new(i.clone(), client.clone(), metrics.clone()))
        .collect();
    for store in &stores {
        tokio::spawn(store.clone().run_refresh(stop.clone()));
    }
    Ok(stores)
}

/// What happens after the listener stops accepting.
struct Drain {
    sessions: TaskTracker,
    /// Cancelled when the grace period is over: WebSockets close with 1001.
    websockets: CancellationToken,
    /// Cancelled last: key refresh, stores, admin listener.
    background: CancellationToken,
    grace: Duration,
}

impl Drain {
    async fn run(self, graceful: GracefulShutdown) {
        let open = graceful.count();
        self.sessions.close();
        let finished = async {
            graceful.shutdown().await;
            self.sessions.wait().await;
        };
        tokio::select! {
            _ = finished => tracing::info!(connections = open, "drained"),
            _ = tokio::time::sleep(self.grace) => {
                tracing::warn!(
                    grace_secs = self.grace.as_secs_f64(),
                    websockets = self.sessions.len(),
                    "grace period over; closing what is still open (WebSockets with 1001)"
                );
            }
        }
        self.websockets.cancel();
        // Each session sends its close frame under its own short timeout.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.sessions.wait()).await;
        self.background.cancel();
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
pub fn runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    builder.enable_all().build()
}
