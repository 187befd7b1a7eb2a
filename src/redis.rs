//! The Redis connection shared stores use when several replicas run.
//!
//! The handle connects lazily (gatehouse starts, and answers 503 where it must, while Redis
//! is down), bounds every command with a short timeout, and pings once a second so
//! `/readyz` can say within a few seconds that the store is gone and when it is back. The
//! connection manager reconnects by itself; nothing here ever falls back to memory, which
//! would silently break single use and revocation across replicas.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;

use crate::secret::Secret;

/// Every Redis command answers within this or counts as a failure.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// The store counts as down when no ping succeeded for this long.
const STALE_AFTER: Duration = Duration::from_secs(3);
const PING_EVERY: Duration = Duration::from_secs(1);

/// Redis could not be reached or did not answer in time. Says nothing about the URL,
/// which may hold a password.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the shared store is unavailable")]
pub(crate) struct StoreError;

pub(crate) struct RedisHandle {
    client: redis::Client,
    /// Which store this is (`tickets`, `revocation`) and its `host:port`, for log lines:
    /// never the URL, which may hold a password.
    store: &'static str,
    address: String,
    connection: tokio::sync::Mutex<Option<ConnectionManager>>,
    /// Milliseconds after `born` of the last success (0: never); read on every request.
    last_ok: AtomicU64,
    born: Instant,
}

impl RedisHandle {
    pub(crate) fn new(store: &'static str, url: &Secret) -> Result<Self, String> {
        let client =
            redis::Client::open(url.expose()).map_err(|_| "invalid Redis URL".to_string())?;
        let address = client.get_connection_info().addr().to_string();
        Ok(Self {
            client,
            store,
            address,
            connection: tokio::sync::Mutex::new(None),
            last_ok: AtomicU64::new(0),
            born: Instant::now(),
        })
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// A connection, made on first use. The manager behind it reconnects on its own.
    pub(crate) async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let manager = tokio::time::timeout(
            COMMAND_TIMEOUT * 2,
            self.client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| StoreError)?
        .map_err(|_| StoreError)?;
        *slot = Some(manager.clone());
        Ok(manager)
    }

    /// Runs one command under [`COMMAND_TIMEOUT`], recording success for health.
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection().await?;
        let result =
            tokio::time::timeout(COMMAND_TIMEOUT, command.query_async::<T>(&mut connection)).await;
        match result {
            Ok(Ok(value)) => {
                self.mark_ok();
                Ok(value)
            }
            Ok(Err(e)) => {
                tracing::warn!(
                    store = self.store,
                    address = %self.address,
                    error = %e,
                    "Redis command failed"
                );
                Err(StoreError)
            }
            Err(_) => {
                tracing::warn!(
                    store = self.store,
                    address = %self.address,
                    "Redis command timed out"
                );
                Err(StoreError)
            }
        }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn mark_ok(&self) {
        self.last_ok.store(self.millis().max(1), Ordering::Release);
    }

    /// Reachable recently enough to be trusted.
    pub(crate) fn is_healthy(&self) -> bool {
        let last = self.last_ok.load(Ordering::Acquire);
        last != 0 && u128::from(self.millis().saturating_sub(last)) < STALE_AFTER.as_millis()
    }

    /// Pings once a second until `stop`, so health follows Redis going and coming back.
    pub(crate) async fn keep_checking(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let was_healthy = self.is_healthy();
            let ok = self.run::<String>(&redis::cmd("PING")).await.is_ok();
            if ok && !was_healthy {
                tracing::info!("shared store reachable");
            } else if !ok && was_healthy {
                tracing::error!("shared store unreachable");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(PING_EVERY) => {}
            }
        }
    }
}
