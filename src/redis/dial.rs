//! How a Redis connection is opened: the client with its socket options, and the bounded
//! connect-and-handshake every new connection (commands or pub/sub) goes through.

use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::io::tcp::{socket2::TcpKeepalive, TcpSettings};
use redis::{AsyncConnectionConfig, IntoConnectionInfo};

use super::StoreError;
use crate::secret::Secret;

/// Connect, TLS and the HELLO/AUTH/SELECT handshake together must finish within this.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// A peer that vanished (host gone, partition, a proxy that forgot the session) sends no
/// FIN or RST. Keepalive probes make the kernel notice on an idle socket, and the user
/// timeout on one with unanswered data; gatehouse's own pings notice sooner, and these
/// make sure a socket gatehouse has stopped using cannot linger for the ~15 minutes of
/// default retransmission either.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 3;
const USER_TIMEOUT: Duration = Duration::from_secs(20);

/// The client for `url` with those socket options, and the database number the URL names.
/// The error never repeats the URL, which may hold a password.
pub(crate) fn client(url: &Secret) -> Result<(redis::Client, i64), String> {
    let info = url
        .expose()
        .into_connection_info()
        .map_err(|_| "invalid Redis URL".to_string())?;
    let db = info.redis_settings().db();
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    let settings = TcpSettings::default()
        // Commands are small and answered one by one: Nagle would only add latency.
        .set_nodelay(true)
        .set_keepalive(keepalive);
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let settings = settings.set_user_timeout(USER_TIMEOUT);
    #[cfg(not(any(target_os = "android", target_os = "fuchsia", target_os = "linux")))]
    let _ = USER_TIMEOUT;
    let client = redis::Client::open(info.set_tcp_settings(settings))
        .map_err(|_| "invalid Redis URL".to_string())?;
    Ok((client, db))
}

/// A new command connection. Timeouts are gatehouse's own (see `RedisHandle::run`), so the
/// one that fires is the one that also drops the connection.
pub(crate) async fn commands(client: &redis::Client) -> Result<MultiplexedConnection, StoreError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(DIAL_TIMEOUT))
        .set_response_timeout(None);
    match tokio::time::timeout(
        DIAL_TIMEOUT,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => {
            tracing::warn!(error_kind = ?e.kind(), "could not connect to Redis");
            Err(StoreError)
        }
        Err(_) => {
            tracing::warn!("connecting to Redis timed out");
            Err(StoreError)
        }
    }
}

/// A new pub/sub connection.
pub(crate) async fn pubsub(client: &redis::Client) -> Result<PubSub, StoreError> {
    match tokio::time::timeout(DIAL_TIMEOUT, client.get_async_pubsub()).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(e)) => {
            tracing::warn!(error_kind = ?e.kind(), "could not connect to Redis for pub/sub");
            Err(StoreError)
        }
        Err(_) => {
            tracing::warn!("connecting to Redis for pub/sub timed out");
            Err(StoreError)
        }
    }
}

/// Whether a failed command leaves its connection fit for reuse: only when Redis itself
/// answered with an error. A READONLY answer means a failover demoted this server; a new
/// connection through the same address (VIP, proxy, DNS) may reach the new primary.
pub(crate) fn connection_survives(error: &redis::RedisError) -> bool {
    match error.kind() {
        redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) => false,
        redis::ErrorKind::Server(_)
        | redis::ErrorKind::UnexpectedReturnType
        | redis::ErrorKind::Extension => true,
        _ => false,
    }
}
