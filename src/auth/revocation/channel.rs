//! The pub/sub channel that tells replicas of a revocation at once.
//!
//! Redis pub/sub is server-wide: it ignores the database number, and any client of the
//! server that may `PUBLISH` reaches every subscriber. So the channel's name carries the
//! database ([`name`]), and a message is only ever a hint: it names the key to re-read, and
//! what is applied is what this deployment's own database holds under that key. A message
//! from another deployment, or forged, makes gatehouse re-read its own state and nothing
//! more.
//!
//! A subscription that stops answering is noticed by a ping every second, dropped and made
//! anew; each new subscription is followed by a full resync, for what was published while
//! there was none.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio_util::sync::CancellationToken;

use super::{Revocations, Revoked};
use crate::redis::{RedisHandle, StoreError, COMMAND_TIMEOUT};

/// A live subscription answers a ping within [`COMMAND_TIMEOUT`] every this often.
const PING_EVERY: Duration = Duration::from_secs(1);
/// No entry the admin API can make is near this; longer messages are not read at all.
const MAX_MESSAGE: usize = 64 * 1024;

/// `gatehouse:revocations:db<N>`: deployments on different databases of one server must
/// not hear each other, and the unqualified name of earlier versions is no longer heard.
pub(super) fn name(db: i64) -> String {
    format!("gatehouse:revocations:db{db}")
}

impl Revocations {
    /// Subscribes, and subscribes again whenever the subscription fails or stops answering.
    pub(super) async fn follow_channel(
        self: Arc<Self>,
        redis: Arc<RedisHandle>,
        stop: CancellationToken,
    ) {
        let channel = name(redis.db());
        let mut failures: u32 = 0;
        loop {
            let subscribed = tokio::select! {
                _ = stop.cancelled() => return,
                s = subscribe(&redis, &channel) => s,
            };
            if let Ok((sink, messages)) = subscribed {
                failures = 0;
                self.resync_soon();
                if self.listen(&redis, sink, messages, &stop).await.is_none() {
                    return;
                }
                tracing::warn!("revocation channel lost; subscribing again");
            }
            failures = failures.saturating_add(1);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(crate::redis::dial_backoff(failures)) => {}
            }
        }
    }

    /// Applies what messages name until the subscription fails or misses a ping (then
    /// `Some`), or until `stop` (`None`).
    async fn listen(
        &self,
        redis: &RedisHandle,
        mut sink: PubSubSink,
        mut messages: PubSubStream,
        stop: &CancellationToken,
    ) -> Option<()> {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return None,
                message = messages.next() => {
                    let message = message?;
                    self.reread(redis, message.get_payload_bytes()).await;
                }
                _ = ping.tick() => {
                    let answered = tokio::time::timeout(
                        COMMAND_TIMEOUT,
                        sink.ping::<redis::Value>(),
                    )
                    .await;
                    if !matches!(answered, Ok(Ok(_))) {
                        return Some(());
                    }
                }
            }
        }
    }

    /// Applies the stored entry the message names, if the database holds one.
    async fn reread(&self, redis: &RedisHandle, payload: &[u8]) {
        if payload.len() > MAX_MESSAGE {
            return;
        }
        let Ok(named) = serde_json::from_slice::<Revoked>(payload) else {
            return;
        };
        let mut get = redis::cmd("GET");
        get.arg(named.key());
        match redis.run::<Option<String>>(&get).await {
            Ok(Some(stored)) => match serde_json::from_str::<Revoked>(&stored) {
                // The key decides what an entry is for; a value under another key's name
                // (written by hand) must not revoke someone else.
                Ok(entry) if entry.key() == named.key() => self.apply(entry),
                _ => tracing::debug!("a revocation message named an entry that does not parse"),
            },
            Ok(None) => tracing::debug!("a revocation message named no stored entry"),
            // The next resync reads it.
            Err(StoreError) => {}
        }
    }
}

async fn subscribe(
    redis: &RedisHandle,
    channel: &str,
) -> Result<(PubSubSink, PubSubStream), StoreError> {
    let (mut sink, messages) = redis.pubsub().await?.split();
    match tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(channel)).await {
        Ok(Ok(())) => Ok((sink, messages)),
        _ => {
            tracing::warn!("could not subscribe to the revocation channel");
            Err(StoreError)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_channel_is_named_for_its_database() {
        assert_eq!(super::name(0), "gatehouse:revocations:db0");
        assert_ne!(super::name(1), super::name(11));
        assert_ne!(super::name(0), "gatehouse:revocations");
    }
}
