//! Revocations: a token (by `jti`) or everything a subject got before a time (by `sub` and
//! `before`) stops working, at once, for requests and for open WebSockets.
//!
//! Every replica checks a local view (two maps), so no request waits on Redis. With a
//! `redis://` store, a revocation is written as a key that expires when no token it matches
//! can still be valid, and published on the database's channel; a replica re-reads the key a
//! message names and applies what its database holds ([`channel`]), and re-reads every key
//! each `resync`, so one that missed a message converges anyway. Each applied entry is also
//! sent on a broadcast channel that open WebSocket sessions watch. When Redis is unreachable,
//! the view is stale: requests then get 503 (`on_store_error = "deny"`) or pass with a
//! logged, counted warning (`"allow"`).
//!
//! Revocations only tighten: a new entry for a `jti` or subject already revoked is merged
//! with the old one ([`Revoked::widened`]), keeping the later expiry and the later `before`,
//! here and in Redis (atomically, in one script), so no later request, published message or
//! resync can give a revoked token back its access. The Redis side lives in [`sync`].

mod channel;
mod sync;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::auth::claims::{unix_now, Claims};
use crate::config::validate::RevocationConfig;
use crate::metrics::Metrics;
use crate::redis::{RedisHandle, StoreError};

const KEY_PREFIX: &str = "gatehouse:revoked:";
/// The latest `before` accepted (9999-12-31T23:59:59Z): later values are no time at all, and
/// every stored number must stay exact in the Lua (double) arithmetic of the Redis merge.
pub(crate) const MAX_BEFORE: u64 = 253_402_300_799;

/// One revocation, as stored, published and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Revoked {
    Token {
        jti: String,
        expires: u64,
    },
    Subject {
        sub: String,
        before: u64,
        expires: u64,
    },
}

impl Revoked {
    /// Whether a token with these claims is revoked by this entry. A subject revocation
    /// covers tokens issued before `before`, and tokens without `iat` (we cannot tell).
    pub(crate) fn matches(&self, claims: &Claims) -> bool {
        let text = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
        match self {
            Revoked::Token { jti, .. } => text("jti") == Some(jti.as_str()),
            Revoked::Subject { sub, before, .. } => {
                text("sub") == Some(sub.as_str())
                    && crate::auth::numeric_date::get(claims, "iat").is_none_or(|iat| iat < *before)
            }
        }
    }

    /// The entry that revokes everything `self` and `newer` revoke (same `jti` or subject):
    /// the later expiry and, for a subject, the later `before`. An expired `self` is gone.
    pub(crate) fn widened(&self, newer: Revoked, now: u64) -> Revoked {
        if self.expires() <= now {
            return newer;
        }
        match (self, newer) {
            (Revoked::Token { expires: old, .. }, Revoked::Token { jti, expires }) => {
                Revoked::Token {
                    jti,
                    expires: expires.max(*old),
                }
            }
            (
                Revoked::Subject {
                    before: old_before,
                    expires: old_expires,
                    ..
                },
                Revoked::Subject {
                    sub,
                    before,
                    expires,
                },
            ) => Revoked::Subject {
                sub,
                before: before.max(*old_before),
                expires: expires.max(*old_expires),
            },
            (_, newer) => newer,
        }
    }

    fn expires(&self) -> u64 {
        match self {
            Revoked::Token { expires, .. } | Revoked::Subject { expires, .. } => *expires,
        }
    }

    fn key(&self) -> String {
        match self {
            Revoked::Token { jti, .. } => format!("{KEY_PREFIX}jti:{jti}"),
            Revoked::Subject { sub, .. } => format!("{KEY_PREFIX}sub:{sub}"),
        }
    }
}

/// Why a credential may not pass the revocation check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RevocationError {
    #[error("token revoked")]
    Revoked,
    #[error("the revocation store is unavailable")]
    Unavailable,
}

pub(crate) struct Revocations {
    tokens: DashMap<String, Revoked>,
    subjects: DashMap<String, Revoked>,
    /// At least the number of entries in the two maps: counted up before an entry goes in,
    /// down as it is swept out. While it is 0 (nearly always), a request skips both
    /// lookups, each a SipHash of its `jti` or `sub` under a shard lock.
    held: AtomicUsize,
    redis: Option<Arc<RedisHandle>>,
    events: broadcast::Sender<Revoked>,
    config: RevocationConfig,
    metrics: Arc<Metrics>,
    last_warning: AtomicU64,
    /// A resync succeeded since Redis was last unreachable.
    synced: AtomicBool,
    /// Wakes the resync loop before its next turn (a new subscription missed messages).
    resync_now: tokio::sync::Notify,
}

impl Revocations {
    pub(crate) fn new(
        config: RevocationConfig,
        redis: Option<Arc<RedisHandle>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            tokens: DashMap::new(),
            subjects: DashMap::new(),
            held: AtomicUsize::new(0),
            redis,
            events: broadcast::channel(1024).0,
            config,
            metrics,
            last_warning: AtomicU64::new(0),
            synced: AtomicBool::new(false),
            resync_now: tokio::sync::Notify::new(),
        }
    }

    /// The check every request and every redemption goes through.
    pub(crate) fn check(&self, claims: &Claims) -> Result<(), RevocationError> {
        if !self.is_healthy() {
            self.metrics.store_error("revocation");
            if self.config.deny_on_store_error {
                return Err(RevocationError::Unavailable);
            }
            self.warn_allowing();
        }
        if self.is_revoked(claims) {
            return Err(RevocationError::Revoked);
        }
        Ok(())
    }

    /// At most one warning per 10 s: an outage must not turn every request into a log line.
    fn warn_allowing(&self) {
        let now = unix_now();
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!("revocation store unreachable; checking the last known revocations (on_store_error = allow)");
        }
    }

    pub(crate) fn is_revoked(&self, claims: &Claims) -> bool {
        // SeqCst: a revocation applied before this check began is seen here, as the maps'
        // locks would show it.
        if self.held.load(Ordering::SeqCst) == 0 {
            return false;
        }
        // The clock is read only for an entry found: nearly every token has none.
        let live = |r: &Revoked| r.expires() > unix_now() && r.matches(claims);
        let jti = claims.get("jti").and_then(serde_json::Value::as_str);
        let sub = claims.get("sub").and_then(serde_json::Value::as_str);
        jti.and_then(|j| self.tokens.get(j))
            .is_some_and(|r| live(&r))
            || sub
                .and_then(|s| self.subjects.get(s))
                .is_some_and(|r| live(&r))
    }

    /// Redis answers *and* the view was re-read since Redis was last unreachable: revocations
    /// made during an outage are not in the view until then.
    pub(crate) fn is_healthy(&self) -> bool {
        self.redis
            .as_ref()
            .is_none_or(|r| r.is_healthy() && self.synced.load(Ordering::Acquire))
    }

    /// Open sessions listen here for revocations as they are applied.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Revoked> {
        self.events.subscribe()
    }

    /// Builds the entry for a `jti`, or for a subject's tokens issued before `before`.
    pub(crate) fn entry(
        &self,
        jti: Option<String>,
        sub: Option<String>,
        before: Option<u64>,
    ) -> Option<Revoked> {
        let expires = unix_now() + self.config.retain.as_secs();
        match (jti, sub) {
            (Some(jti), None) if !jti.is_empty() => Some(Revoked::Token { jti, expires }),
            (None, Some(sub)) if !sub.is_empty() && before.is_none_or(|b| b <= MAX_BEFORE) => {
                // `iat` counts whole seconds: "now" covers every token of this second too,
                // or one refreshed a moment before the revocation would survive it.
                let before = before.unwrap_or_else(|| unix_now() + 1);
                // A token issued before `before` lives at most `retain` past it.
                let expires = before
                    .saturating_add(self.config.retain.as_secs())
                    .max(unix_now() + 1);
                Some(Revoked::Subject {
                    sub,
                    before,
                    expires,
                })
            }
            _ => None,
        }
    }

    /// Records a revocation in the store (all replicas) and applies it here. With Redis the
    /// store merges it with what it already holds and the merged entry is applied.
    pub(crate) async fn revoke(&self, entry: Revoked) -> Result<(), StoreError> {
        let entry = match &self.redis {
            Some(redis) => sync::store(redis, &entry).await?,
            None => entry,
        };
        self.apply(entry);
        Ok(())
    }

    /// The live entries, for `GET /revocations`.
    pub(crate) fn list(&self) -> Vec<Revoked> {
        let now = unix_now();
        let mut all: Vec<Revoked> = self
            .tokens
            .iter()
            .chain(self.subjects.iter())
            .map(|e| e.value().clone())
            .filter(|r| r.expires() > now)
            .collect();
        all.sort_by_key(Revoked::key);
        all
    }

    /// Merges `entry` into the view; open sessions hear of it only when it revokes more.
    fn apply(&self, entry: Revoked) {
        let (map, id) = match &entry {
            Revoked::Token { jti, .. } => (&self.tokens, jti.clone()),
            Revoked::Subject { sub, .. } => (&self.subjects, sub.clone()),
        };
        let changed = match map.entry(id) {
            Entry::Occupied(mut slot) => {
                let merged = slot.get().widened(entry, unix_now());
                if *slot.get() == merged {
                    None
                } else {
                    slot.insert(merged.clone());
                    Some(merged)
                }
            }
            Entry::Vacant(slot) => {
                // Counted before it is there: `is_revoked` never skips an entry in the maps.
                self.held.fetch_add(1, Ordering::SeqCst);
                Some(slot.insert(entry).clone())
            }
        };
        if let Some(entry) = changed {
            // No receiver (no open session) is fine.
            let _ = self.events.send(entry);
        }
    }

    /// Background work: with Redis, follow the channel and resync; always drop expired entries.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        if let Some(redis) = self.redis.clone() {
            tokio::spawn(self.clone().follow_channel(redis.clone(), stop.clone()));
            tokio::spawn(self.clone().keep_synced(redis, stop.clone()));
        }
        loop {
            self.sweep();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.config.resync) => {}
            }
        }
    }

    /// Asks for a full re-read now rather than at the next `resync`.
    fn resync_soon(&self) {
        self.resync_now.notify_one();
    }

    fn sweep(&self) {
        let now = unix_now();
        // Counted down as each entry goes, under its shard's lock: an expired entry revokes
        // nothing, so a check that skips it a moment early decides as one that read it.
        let live = |_: &String, r: &mut Revoked| {
            let live = r.expires() > now;
            if !live {
                self.held.fetch_sub(1, Ordering::SeqCst);
            }
            live
        };
        self.tokens.retain(live);
        self.subjects.retain(live);
    }
}

#[cfg(test)]
mod tests;
