//! Revocations: a token (by `jti`) or everything a subject got before a time (by `sub` and
//! `before`) stops working, at once, for requests and for open WebSockets.
//!
//! Every replica checks a local view (two maps), so no request waits on Redis. With a
//! `redis://` store, a revocation is written as a key that expires when no token it matches
//! can still be valid, and published on a channel; replicas apply published entries as they
//! arrive and re-read every key each `resync`, so one that missed a message converges
//! anyway. Each applied entry is also sent on a broadcast channel that open WebSocket
//! sessions watch. When Redis is unreachable, the view is stale: requests then get 503
//! (`on_store_error = "deny"`) or pass with a logged, counted warning (`"allow"`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::config::validate::RevocationConfig;
use crate::metrics::Metrics;
use crate::store::{RedisHandle, StoreError};
use crate::validate::{unix_now, Claims};

const KEY_PREFIX: &str = "gatehouse:revoked:";
const CHANNEL: &str = "gatehouse:revocations";
/// How often the sync loop looks at Redis health (a resync itself runs every `resync`).
const SYNC_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// One revocation, as stored, published and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Revoked {
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
    pub fn matches(&self, claims: &Claims) -> bool {
        let text = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
        match self {
            Revoked::Token { jti, .. } => text("jti") == Some(jti.as_str()),
            Revoked::Subject { sub, before, .. } => {
                text("sub") == Some(sub.as_str())
                    && crate::numeric_date::get(claims, "iat").is_none_or(|iat| iat < *before)
            }
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
pub enum RevocationError {
    #[error("token revoked")]
    Revoked,
    #[error("the revocation store is unavailable")]
    Unavailable,
}

pub struct Revocations {
    tokens: DashMap<String, Revoked>,
    subjects: DashMap<String, Revoked>,
    redis: Option<Arc<RedisHandle>>,
    events: broadcast::Sender<Revoked>,
    config: RevocationConfig,
    metrics: Arc<Metrics>,
    last_warning: AtomicU64,
    /// A resync succeeded since Redis was last unreachable.
    synced: AtomicBool,
}

impl Revocations {
    pub fn new(
        config: RevocationConfig,
        redis: Option<Arc<RedisHandle>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            tokens: DashMap::new(),
            subjects: DashMap::new(),
            redis,
            events: broadcast::channel(1024).0,
            config,
            metrics,
            last_warning: AtomicU64::new(0),
            synced: AtomicBool::new(false),
        }
    }

    /// The check every request and every redemption goes through.
    pub fn check(&self, claims: &Claims) -> Result<(), RevocationError> {
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

    pub fn is_revoked(&self, claims: &Claims) -> bool {
        let now = unix_now();
        let live = |r: &Revoked| r.expires() > now && r.matches(claims);
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
    pub fn is_healthy(&self) -> bool {
        self.redis
            .as_ref()
            .is_none_or(|r| r.is_healthy() && self.synced.load(Ordering::Acquire))
    }

    /// Open sessions listen here for revocations as they are applied.
    pub fn subscribe(&self) -> broadcast::Receiver<Revoked> {
        self.events.subscribe()
    }

    /// Builds the entry for a `jti`, or for a subject's tokens issued before `before`.
    pub fn entry(
        &self,
        jti: Option<String>,
        sub: Option<String>,
        before: Option<u64>,
    ) -> Option<Revoked> {
        let expires = unix_now() + self.config.retain.as_secs();
        match (jti, sub) {
            (Some(jti), None) if !jti.is_empty() => Some(Revoked::Token { jti, expires }),
            (None, Some(sub)) if !sub.is_empty() => {
                let before = before.unwrap_or_else(unix_now);
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

    /// Records a revocation in the store (all replicas) and applies it here.
    pub async fn revoke(&self, entry: Revoked) -> Result<(), StoreError> {
        if let Some(redis) = &self.redis {
            let value = serde_json::to_string(&entry).map_err(|_| StoreError)?;
            let mut set = redis::cmd("SET");
            set.arg(entry.key())
                .arg(&value)
                .arg("EXAT")
                .arg(entry.expires());
            redis.run::<String>(&set).await?;
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(CHANNEL).arg(&value);
            redis.run::<i64>(&publish).await?;
        }
        self.apply(entry);
        Ok(())
    }

    /// The live entries, for `GET /revocations`.
    pub fn list(&self) -> Vec<Revoked> {
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

    fn apply(&self, entry: Revoked) {
        let map = match &entry {
            Revoked::Token { .. } => &self.tokens,
            Revoked::Subject { .. } => &self.subjects,
        };
        let id = match &entry {
            Revoked::Token { jti, .. } => jti.clone(),
            Revoked::Subject { sub, .. } => sub.clone(),
        };
        if map.get(&id).is_some_and(|old| *old == entry) {
            return;
        }
        map.insert(id, entry.clone());
        // No receiver (no open session) is fine.
        let _ = self.events.send(entry);
    }

    /// Background work: with Redis, follow the channel and resync; always drop expired entries.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        if let Some(redis) = self.redis.clone() {
            tokio::spawn(self.clone().follow_channel(stop.clone()));
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

    /// Re-reads every entry each `resync`, and at once whenever Redis comes back: until
    /// then the view may lack revocations made during the outage, and counts as unhealthy.
    async fn keep_synced(self: Arc<Self>, redis: Arc<RedisHandle>, stop: CancellationToken) {
        let mut last_sync: Option<std::time::Instant> = None;
        loop {
            if !redis.is_healthy() {
                self.synced.store(false, Ordering::Release);
            }
            let due = last_sync.is_none_or(|t| t.elapsed() >= self.config.resync);
            if due || !self.synced.load(Ordering::Acquire) {
                match self.resync().await {
                    Ok(()) => {
                        self.synced.store(true, Ordering::Release);
                        last_sync = Some(std::time::Instant::now());
                    }
                    Err(StoreError) => tracing::debug!("revocation resync failed"),
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SYNC_TICK) => {}
            }
        }
    }

    fn sweep(&self) {
        let now = unix_now();
        self.tokens.retain(|_, r| r.expires() > now);
        self.subjects.retain(|_, r| r.expires() > now);
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
        let mut mget = redis::cmd("MGET");
        for key in &keys {
            mget.arg(key);
        }
        let values: Vec<Option<String>> = redis.run(&mget).await?;
        for value in values.into_iter().flatten() {
            if let Ok(entry) = serde_json::from_str::<Revoked>(&value) {
                self.apply(entry);
            }
        }
        Ok(())
    }

    async fn follow_channel(self: Arc<Self>, stop: CancellationToken) {
        let Some(redis) = self.redis.clone() else {
            return;
        };
        loop {
            let subscribed = async {
                let mut pubsub = redis.client().get_async_pubsub().await.ok()?;
                pubsub.subscribe(CHANNEL).await.ok()?;
                Some(pubsub)
            };
            let pubsub = tokio::select! {
                _ = stop.cancelled() => return,
                p = tokio::time::timeout(crate::store::COMMAND_TIMEOUT * 2, subscribed) => p.ok().flatten(),
            };
            if let Some(pubsub) = pubsub {
                let mut messages = pubsub.into_on_message();
                loop {
                    let message = tokio::select! {
                        _ = stop.cancelled() => return,
                        m = messages.next() => m,
                    };
                    let Some(message) = message else { break };
                    let Ok(payload) = message.get_payload::<String>() else {
                        continue;
                    };
                    if let Ok(entry) = serde_json::from_str::<Revoked>(&payload) {
                        self.apply(entry);
                    }
                }
            }
            // Disconnected: the resync keeps the view right meanwhile; try again shortly.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: serde_json::Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn entries_match_by_jti_or_by_subject_before_a_time() {
        let token = Revoked::Token {
            jti: "j1".into(),
            expires: u64::MAX,
        };
        assert!(token.matches(&claims(json!({"jti": "j1", "sub": "a"}))));
        assert!(!token.matches(&claims(json!({"jti": "j2", "sub": "a"}))));
        let subject = Revoked::Subject {
            sub: "a".into(),
            before: 100,
            expires: u64::MAX,
        };
        assert!(subject.matches(&claims(json!({"sub": "a", "iat": 99}))));
        assert!(!subject.matches(&claims(json!({"sub": "a", "iat": 100}))));
        assert!(
            subject.matches(&claims(json!({"sub": "a"}))),
            "no iat: cannot prove it is newer"
        );
        assert!(!subject.matches(&claims(json!({"sub": "b", "iat": 1}))));
    }

    #[test]
    fn entries_round_trip_as_the_admin_api_shows_them() {
        let s = Revoked::Subject {
            sub: "a".into(),
            before: 5,
            expires: 9,
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(text, r#"{"sub":"a","before":5,"expires":9}"#);
        assert_eq!(serde_json::from_str::<Revoked>(&text).unwrap(), s);
        let t: Revoked = serde_json::from_str(r#"{"jti":"x","expires":3}"#).unwrap();
        assert_eq!(
            t,
            Revoked::Token {
                jti: "x".into(),
                expires: 3
            }
        );
    }
}
