//! The Redis side of revocations: the atomic merge-and-publish on write, and the periodic
//! re-read that lets a replica that missed a message converge (the channel every replica
//! follows is in [`super::channel`]). Applying any of these locally goes through
//! [`Revocations::apply`], which only tightens, so messages may arrive late, twice or out of
//! order.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Revocations, Revoked, KEY_PREFIX};
use crate::auth::claims::unix_now;
use crate::redis::{RedisHandle, StoreError};

/// How often the sync loop looks at Redis health (a resync itself runs every `resync`).
const SYNC_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// Merges the new entry with the stored one, writes the result with its expiry and
/// publishes it, all in one script: two replicas revoking the same subject at once cannot
/// lose the wider entry, and a narrower one never replaces a wider one. Only the numbers
/// are merged (the strings come from the new entry, which names the same key).
const MERGE: &str = r"
local new = cjson.decode(ARGV[1])
local now = tonumber(ARGV[3])
local old = redis.call('GET', KEYS[1])
if old then
  local ok, prev = pcall(cjson.decode, old)
  if ok and type(prev) == 'table' and type(prev.expires) == 'number' and prev.expires > now then
    if prev.expires > new.expires then new.expires = prev.expires end
    if new.before ~= nil and type(prev.before) == 'number' and prev.before > new.before then
      new.before = prev.before
    end
  end
end
local value = cjson.encode(new)
redis.call('SET', KEYS[1], value, 'EXAT', string.format('%d', new.expires))
redis.call('PUBLISH', ARGV[2], value)
return value
";

/// Writes `entry` to Redis (merged with what is there) and returns the merged entry.
pub(super) async fn store(redis: &RedisHandle, entry: &Revoked) -> Result<Revoked, StoreError> {
    let value = serde_json::to_string(entry).map_err(|_| StoreError)?;
    let mut eval = redis::cmd("EVAL");
    eval.arg(MERGE)
        .arg(1)
        .arg(entry.key())
        .arg(&value)
        .arg(super::channel::name(redis.db()))
        .arg(unix_now());
    let merged: String = redis.run(&eval).await?;
    serde_json::from_str(&merged).map_err(|_| {
        tracing::error!("the revocation store returned an entry that does not parse");
        StoreError
    })
}

impl Revocations {
    /// Re-reads every entry each `resync`, at once whenever Redis comes back (until then the
    /// view may lack revocations made during the outage, and counts as unhealthy), and at
    /// once when asked ([`Revocations::resync_soon`]).
    pub(super) async fn keep_synced(
        self: Arc<Self>,
        redis: Arc<RedisHandle>,
        stop: CancellationToken,
    ) {
        let mut last_sync: Option<std::time::Instant> = None;
        let mut asked = false;
        loop {
            if !redis.is_healthy() {
                self.synced.store(false, Ordering::Release);
            }
            let due = asked || last_sync.is_none_or(|t| t.elapsed() >= self.config.resync);
            if due || !self.synced.load(Ordering::Acquire) {
                match self.resync().await {
                    Ok(()) => {
                        self.synced.store(true, Ordering::Release);
                        last_sync = Some(std::time::Instant::now());
                    }
                    Err(StoreError) => tracing::debug!("revocation resync failed"),
                }
            }
            asked = tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.resync_now.notified() => true,
                _ = tokio::time::sleep(SYNC_TICK) => false,
            };
        }
    }

    /// Applies `value` as stored under `key`. An entry counts only under its own key: a
    /// value written by hand under another name must not revoke someone else.
    pub(super) fn apply_stored(&self, key: &str, value: &str) {
        match serde_json::from_str::<Revoked>(value) {
            Ok(entry) if entry.key() == key => self.apply(entry),
            _ => tracing::debug!("a stored revocation does not parse or is under another key"),
        }
    }

    /// Re-reads every revocation key, so a replica that missed a message still converges.
    async fn resync(&self) -> Result<(), StoreError> {
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        let mut keys: HashSet<String> = HashSet::new();
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(format!("{KEY_PREFIX}*"))
                .arg("COUNT")
                .arg(1000);
            let (next, batch): (u64, Vec<String>) = redis.run(&scan).await?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = keys.into_iter().collect();
        let mut mget = redis::cmd("MGET");
        for key in &keys {
            mget.arg(key);
        }
        let values: Vec<Option<String>> = redis.run(&mget).await?;
        for (key, value) in keys.iter().zip(values) {
            if let Some(value) = value {
                self.apply_stored(key, &value);
            }
        }
        Ok(())
    }
}
