//! The validated-token cache: what a token proved, kept until `exp` + leeway.
//!
//! An entry is found by its [`Bucket`], 16 bytes taken from the start of the token's
//! signature (after its last `.`), and holds the whole token. A hit counts only when the
//! presented token equals the stored one byte for byte, so two tokens that share a bucket
//! (a forgery that copies a signature's start, or a chance meeting) never share claims: a
//! mismatch is a miss, and the token goes on to be verified. Finding the bucket costs a
//! keyed hash of 16 bytes where a SHA-256 of the whole token (about 1 KiB for RS256) used to.
//! The signature of a token the issuer signed is unpredictable to anyone without its key,
//! so valid tokens spread over buckets evenly; only a valid token is ever stored.

use dashmap::DashMap;

/// Where a token's entry lives: the first 16 bytes of its signature, zero-padded.
type Bucket = [u8; 16];

pub(crate) struct TokenCache<V> {
    map: DashMap<Bucket, Entry<V>>,
    capacity: usize,
}

struct Entry<V> {
    token: Box<[u8]>,
    value: V,
    /// Unix seconds after which the entry no longer holds.
    not_after: u64,
}

impl<V> TokenCache<V> {
    /// At most `capacity` entries; `0` keeps none.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: DashMap::new(),
            capacity,
        }
    }

    /// What `token` proved, read through `check` (which refuses an entry whose proof no
    /// longer holds, e.g. its key was rotated out); an expired or refused entry is dropped.
    pub(crate) fn get<R>(
        &self,
        token: &str,
        now: u64,
        check: impl FnOnce(&V) -> Option<R>,
    ) -> Option<R> {
        let bucket = bucket(token);
        let entry = self.map.get(&bucket)?;
        if !same_token(&entry.token, token.as_bytes()) {
            // Another token in this bucket: not ours to read, and not ours to evict.
            return None;
        }
        if now <= entry.not_after {
            if let Some(found) = check(&entry.value) {
                return Some(found);
            }
        }
        drop(entry);
        self.map
            .remove_if(&bucket, |_, e| same_token(&e.token, token.as_bytes()));
        None
    }

    /// Keeps what `token` proved until `not_after`; a token sharing its bucket is replaced.
    pub(crate) fn insert(&self, token: &str, value: V, not_after: u64, now: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity {
            self.map.retain(|_, e| e.not_after >= now);
            if self.map.len() >= self.capacity {
                // Still full of live entries: start over rather than grow without bound.
                self.map.clear();
            }
        }
        let entry = Entry {
            token: token.as_bytes().into(),
            value,
            not_after,
        };
        self.map.insert(bucket(token), entry);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

fn bucket(token: &str) -> Bucket {
    // memchr's search is vectorised; `rsplit` walks a 600-byte JWT's signature a word at a time.
    let bytes = token.as_bytes();
    let signature = memchr::memrchr(b'.', bytes).map_or(bytes, |dot| &bytes[dot + 1..]);
    let mut bucket = [0; 16];
    let n = signature.len().min(bucket.len());
    bucket[..n].copy_from_slice(&signature[..n]);
    bucket
}

/// Equal bytes, in time that depends only on the lengths: a caller who reached a bucket
/// learns nothing from how long the comparison took about where the tokens differ.
fn same_token(stored: &[u8], presented: &[u8]) -> bool {
    stored.len() == presented.len()
        && stored
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(v: &u32) -> Option<u32> {
        Some(*v)
    }

    #[test]
    fn tokens_sharing_a_bucket_never_share_what_they_proved() {
        let cache = TokenCache::new(10);
        let valid = "h.p.SIGNATURE-START-0123456789-rest-of-a";
        let forged = "h.other.SIGNATURE-START-0123456789-rest-of-b";
        let same_but_longer = "h.p.SIGNATURE-START-0123456789-rest-of-a=";
        assert_eq!(bucket(valid), bucket(forged));
        assert_eq!(bucket(valid), bucket(same_but_longer));
        cache.insert(valid, 1, 100, 0);
        assert_eq!(cache.get(forged, 0, some), None);
        assert_eq!(cache.get(same_but_longer, 0, some), None);
        // The misses did not evict the owner of the bucket.
        assert_eq!(cache.get(valid, 0, some), Some(1));
        // A second valid token in the same bucket replaces the first; it reads only its own.
        cache.insert(forged, 2, 100, 0);
        assert_eq!(cache.get(valid, 0, some), None);
        assert_eq!(cache.get(forged, 0, some), Some(2));
    }

    #[test]
    fn entries_end_at_not_after_or_when_check_refuses() {
        let cache = TokenCache::new(10);
        cache.insert("a.b.c1", 1, 100, 0);
        assert_eq!(cache.get("a.b.c1", 100, some), Some(1));
        assert_eq!(cache.get("a.b.c1", 101, some), None);
        assert_eq!(cache.len(), 0);
        cache.insert("a.b.c2", 2, 100, 0);
        assert_eq!(cache.get("a.b.c2", 0, |_| None::<u32>), None);
        assert_eq!(cache.get("a.b.c2", 0, some), None);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_then_everything() {
        let cache = TokenCache::new(2);
        cache.insert("x.y.old", 1, 10, 0);
        cache.insert("x.y.live", 2, 100, 0);
        cache.insert("x.y.new", 3, 100, 50);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("x.y.old", 50, some), None);
        cache.insert("x.y.newer", 4, 100, 50);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("x.y.newer", 50, some), Some(4));
        let off = TokenCache::new(0);
        off.insert("x.y.z", 1, 100, 0);
        assert_eq!(off.get("x.y.z", 0, some), None);
    }
}
