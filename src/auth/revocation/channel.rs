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

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::aio::{PubSubSink, PubSubStream};
use tokio_util::sync::CancellationToken;

use super::{Revocations, Revoked};
use crate::redis::{RedisHandle, StoreError, COMMAND_TIMEOUT};

/// A live subscription answers a ping within [`COMMAND_TIMEOUT`] every this often.
const PING_EVERY: Duration = Duration::from_secs(1);
/// No entry the admin API can make is near this; longer messages are not read at all.
const MAX_MESSAGE: usize = 64 * 1024;
/// At most this many keys per re-read.
const MAX_BATCH: usize = 256;

/// `gatehouse:revocations:db<N>`: deployments on different databases of one server must
/// not hear each other, and the unqualified name of earlier versions is no longer heard.
pub(super) fn name(db: i64) -> String {
    format!("gatehouse:revocations:db{db}")
}

/// Why [`Revocations::listen`] returned.
enum Ended {
    Stopped,
    Lost,
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
                match self.listen(&redis, sink, messages, &stop).await {
                    Ended::Stopped => return,
                    Ended::Lost => tracing::warn!("revocation channel lost; subscribing again"),
                }
            }
            failures = failures.saturating_add(1);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(crate::redis::dial_backoff(failures)) => {}
            }
        }
    }

    /// Applies what messages name until the subscription fails or misses a ping, or `stop`.
    async fn listen(
        &self,
        redis: &RedisHandle,
        mut sink: PubSubSink,
        mut messages: PubSubStream,
        stop: &CancellationToken,
    ) -> Ended {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ended::Stopped,
                message = messages.next() => {
                    let Some(first) = message else { return Ended::Lost };
                    // Everything already queued goes into one read: a flood of messages
                    // costs one MGET per batch, not one round trip each.
                    let mut keys = BTreeSet::new();
                    keys.extend(named_key(first.get_payload_bytes()));
                    while keys.len() < MAX_BATCH {
                        match messages.next().now_or_never() {
                            Some(Some(m)) => keys.extend(named_key(m.get_payload_bytes())),
                            Some(None) => return Ended::Lost,
                            None => break,
                        }
                    }
                    self.reread(redis, keys).await;
                }
                _ = ping.tick() => {
                    let answered = tokio::time::timeout(
                        COMMAND_TIMEOUT,
                        sink.ping::<redis::Value>(),
                    )
                    .await;
                    if !matches!(answered, Ok(Ok(_))) {
                        return Ended::Lost;
                    }
                }
            }
        }
    }

    /// Applies the stored entries under `keys`, where the database holds them.
    async fn reread(&self, redis: &RedisHandle, keys: BTreeSet<String>) {
        if keys.is_empty() {
            return;
        }
        let mut mget = redis::cmd("MGET");
        for key in &keys {
            mget.arg(key);
        }
        // On failure the next resync reads them.
        if let Ok(values) = redis.run::<Vec<Option<String>>>(&mget).await {
            for (key, value) in keys.iter().zip(values) {
                if let Some(value) = value {
                    self.apply_stored(key, &value);
                }
            }
        }
    }
}

/// The key of the entry a message names; nothing else of the message is used.
fn named_key(payload: &[u8]) -> Option<String> {
    if payload.len() > MAX_MESSAGE {
        return None;
    }
    serde_json::from_slice::<Revoked>(payload)
        .ok()
        .map(|named| named.key())
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
