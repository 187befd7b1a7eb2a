//! The introspection caches, keyed by the token's SHA-256: active answers and inactive ones
//! live in separate bounded maps, so a flood of made-up tokens (each an inactive answer)
//! can only push out other inactive answers, never a real caller's active one. Active
//! entries can only be made by tokens the IdP vouched for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::auth::claims::{unix_now, Claims};

pub(super) type Digest = [u8; 32];

pub(super) struct Caches {
    active: Bounded<Arc<Claims>>,
    inactive: Bounded<()>,
}

/// A cached answer: the claims of an active token, or `None` for an inactive one.
pub(super) type Hit = Option<Arc<Claims>>;

impl Caches {
    pub(super) fn new(active_entries: usize, inactive_entries: usize) -> Self {
        Self {
            active: Bounded::new(active_entries),
            inactive: Bounded::new(inactive_entries),
        }
    }

    pub(super) fn get(&self, digest: &Digest) -> Option<Hit> {
        if let Some(claims) = self.active.get(digest) {
            return Some(Some(claims));
        }
        self.inactive.get(digest).map(|()| None)
    }

    /// Keeps an active answer for `ttl`, never past the token's `exp`.
    pub(super) fn remember_active(&self, digest: Digest, claims: Arc<Claims>, ttl: Duration) {
        let exp = claims.get("exp").and_then(serde_json::Value::as_u64);
        let ttl = match exp {
            Some(exp) => ttl.min(Duration::from_secs(exp.saturating_sub(unix_now()))),
            None => ttl,
        };
        self.inactive.remove(&digest);
        self.active.insert(digest, claims, ttl);
    }

    pub(super) fn remember_inactive(&self, digest: Digest, ttl: Duration) {
        self.inactive.insert(digest, (), ttl);
    }
}

/// A map of at most `capacity` live entries. When full, expired entries go first; if it is
/// still full, an arbitrary sixteenth of it does (cheaper than tracking age, and bounded).
struct Bounded<T> {
    capacity: usize,
    map: DashMap<Digest, (T, Instant)>,
}

impl<T: Clone> Bounded<T> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            map: DashMap::new(),
        }
    }

    fn get(&self, digest: &Digest) -> Option<T> {
        let entry = self.map.get(digest)?;
        if entry.1 > Instant::now() {
            return Some(entry.0.clone());
        }
        drop(entry);
        self.map.remove(digest);
        None
    }

    fn remove(&self, digest: &Digest) {
        self.map.remove(digest);
    }

    fn insert(&self, digest: Digest, value: T, ttl: Duration) {
        if self.capacity == 0 || ttl.is_zero() {
            return;
        }
        if self.map.len() >= self.capacity {
            let now = Instant::now();
            self.map.retain(|_, (_, until)| *until > now);
        }
        if self.map.len() >= self.capacity {
            let victims: Vec<Digest> = self
                .map
                .iter()
                .take((self.capacity / 16).max(1))
                .map(|e| *e.key())
                .collect();
            for key in victims {
                self.map.remove(&key);
            }
        }
        self.map.insert(digest, (value, Instant::now() + ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(i: u32) -> Digest {
        let mut d = [0; 32];
        d[..4].copy_from_slice(&i.to_be_bytes());
        d
    }

    #[test]
    fn inactive_answers_never_evict_active_ones() {
        let caches = Caches::new(2, 4);
        let claims = Arc::new(Claims::new());
        caches.remember_active(digest(0), claims.clone(), Duration::from_secs(60));
        for i in 1..1000 {
            caches.remember_inactive(digest(i), Duration::from_secs(60));
        }
        assert!(matches!(caches.get(&digest(0)), Some(Some(_))));
        assert!(caches.inactive.map.len() <= 4);
        assert!(matches!(caches.get(&digest(999)), Some(None)));
    }

    #[test]
    fn each_map_holds_at_most_its_capacity() {
        let caches = Caches::new(3, 0);
        for i in 0..10 {
            caches.remember_active(digest(i), Arc::new(Claims::new()), Duration::from_secs(60));
        }
        assert!(caches.active.map.len() <= 3);
        assert!(matches!(caches.get(&digest(9)), Some(Some(_))));
        caches.remember_inactive(digest(50), Duration::from_secs(60));
        assert!(
            caches.get(&digest(50)).is_none(),
            "capacity 0 caches nothing"
        );
    }
}
