//! The per-replica TLS session cache, with the age limit tickets have.
//!
//! rustls' memory cache keeps a session until newer ones push it out, which on a quiet
//! replica can be days, and its TLS 1.3 tickets into the cache always announce 24 hours.
//! `session_ticket_lifetime` promises that no session older than it resumes, sealed ticket
//! or not, so each value is stored with the time it was put and refused once older: the
//! client then does a full handshake, as with an expired sealed ticket.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};
use tokio::time::Instant;

/// Bytes of the put time in front of each stored value.
const STAMP: usize = 8;

pub(crate) struct AgedCache {
    inner: Arc<ServerSessionMemoryCache>,
    /// Stamps count milliseconds since this.
    born: Instant,
    lifetime: Duration,
}

impl AgedCache {
    pub(crate) fn new(size: usize, lifetime: Duration) -> Arc<AgedCache> {
        Arc::new(AgedCache {
            inner: ServerSessionMemoryCache::new(size),
            born: Instant::now(),
            lifetime,
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The stored session without its stamp, if it is young enough to resume.
    fn fresh(&self, stored: Vec<u8>) -> Option<Vec<u8>> {
        let stamp = u64::from_be_bytes(stored.get(..STAMP)?.try_into().ok()?);
        let age = Duration::from_millis(self.now().saturating_sub(stamp));
        (age <= self.lifetime).then(|| stored[STAMP..].to_vec())
    }
}

impl fmt::Debug for AgedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgedCache")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl StoresServerSessions for AgedCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut stamped = Vec::with_capacity(STAMP + value.len());
        stamped.extend_from_slice(&self.now().to_be_bytes());
        stamped.extend_from_slice(&value);
        self.inner.put(key, stamped)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.fresh(self.inner.get(key)?)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.fresh(self.inner.take(key)?)
    }

    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_session_older_than_the_lifetime_does_not_resume() {
        let cache = AgedCache::new(16, Duration::from_secs(6));
        assert!(cache.put(b"a".to_vec(), b"secret".to_vec()));
        assert!(cache.put(b"b".to_vec(), b"other".to_vec()));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(cache.get(b"a").as_deref(), Some(&b"secret"[..]));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(cache.get(b"a"), None);
        assert_eq!(cache.take(b"b"), None);
        assert_eq!(cache.get(b"missing"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn take_returns_a_fresh_session_once() {
        let cache = AgedCache::new(16, Duration::from_secs(6));
        assert!(cache.put(b"a".to_vec(), b"secret".to_vec()));
        assert_eq!(cache.take(b"a").as_deref(), Some(&b"secret"[..]));
        assert_eq!(cache.take(b"a"), None);
    }
}
