//! The Redis connection shared stores use when several replicas run.
//!
//! The handle connects lazily (gatehouse starts, and answers 503 where it must, while Redis
//! is down), bounds every command with a short timeout, and pings once a second so
//! `/readyz` can say within a few seconds that the store is gone and when it is back. A
//! connection that fails or does not answer in time is dropped and a new one dialled
//! ([`link`]), so a Redis that answers at the configured address is reached again within a
//! few seconds even when the old socket is silently dead. Nothing here ever falls back to
//! memory, which would silently break single use and revocation across replicas.

mod dial;
mod link;

pub(crate) use link::backoff as dial_backoff;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// The database the URL names: pub/sub ignores it, so channels carry it in their name.
    db: i64,
    link: tokio::sync::Mutex<link::Link>,
    /// Which store this is (`tickets`, `revocation`) and its `host:port`, for log lines:
    /// never the URL, which may hold a password.
    store: &'static str,
    address: String,
    /// Milliseconds after `born` of the last success (0: never); read on every request.
    last_ok: AtomicU64,
    born: Instant,
}

impl RedisHandle {
    pub(crate) fn new(store: &'static str, url: &Secret) -> Result<Self, String> {
        let (client, db) = dial::client(url)?;
        let address = client.get_connection_info().addr().to_string();
        Ok(Self {
            client,
            db,
            link: tokio::sync::Mutex::new(link::Link::default()),
            store,
            address,
            last_ok: AtomicU64::new(0),
            born: Instant::now(),
        })
    }

    /// A new pub/sub connection; the subscriber keeps it alive (or not) itself.
    pub(crate) async fn pubsub(&self) -> Result<redis::aio::PubSub, StoreError> {
        dial::pubsub(&self.client).await
    }

    pub(crate) fn db(&self) -> i64 {
        self.db
    }

    /// Runs one command under [`COMMAND_TIMEOUT`], recording success for health. A failure
    /// that may have left the connection unusable drops it, so the next command dials anew.
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> Result<T, StoreError> {
        // The lock is held while dialling only: concurrent callers wait for one dial
        // instead of each opening a connection.
        let link::Leased { id, mut connection } = self.link.lock().await.get(&self.client).await?;
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
                if !dial::connection_survives(&e) {
                    self.link.lock().await.discard(id);
                }
                Err(StoreError)
            }
            Err(_) => {
                // A connection that stopped answering may be dead without a sign (a failover
                // behind a proxy, a partition): only a new one can tell. Commands already
                // sent on it keep their own clone and their own timeout.
                tracing::warn!(
                    store = self.store,
                    address = %self.address,
                    "Redis command timed out; dropping the connection"
                );
                self.link.lock().await.discard(id);
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
