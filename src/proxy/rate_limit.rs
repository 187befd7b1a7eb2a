//! Per-client fixed-window counters: at most `limit` events per client per window. Coarse
//! on purpose (a burst at a window edge may reach twice the limit); they exist to keep one
//! client from flooding an endpoint, not to meter fairly.
//!
//! The counters live in [`RateLimits`], built once and kept across config reloads (it
//! sits in `generation::Shared`): a reload, or an edit that only changes a limit, never
//! hands a client back what it already spent. The limit itself is read from the serving
//! generation on every check, so a changed limit applies at once to the counts so far.

use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Every rate limiter of the process.
pub(crate) struct RateLimits {
    /// `limits.requests_per_ip_per_second`, by client address.
    pub requests_per_ip: RateLimiter<IpAddr>,
    /// `tickets.rate_limit_per_minute`, by authenticated caller (see `ticket_endpoint`).
    pub tickets: RateLimiter<[u8; 32]>,
    /// `logout.rate_limit_per_minute`, by authenticated caller (see `logout`).
    pub logouts: RateLimiter<[u8; 32]>,
}

impl RateLimits {
    pub(crate) fn new() -> Self {
        Self {
            requests_per_ip: RateLimiter::new(Duration::from_secs(1)),
            tickets: RateLimiter::new(Duration::from_secs(60)),
            logouts: RateLimiter::new(Duration::from_secs(60)),
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) struct RateLimiter<K> {
    window: Duration,
    start: Instant,
    counts: DashMap<K, (u64, u32)>,
}

/// Above this many tracked clients, windows that have passed are dropped.
const SWEEP_ABOVE: usize = 10_000;

impl<K: Hash + Eq> RateLimiter<K> {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            start: Instant::now(),
            counts: DashMap::new(),
        }
    }

    /// Counts one event against `limit`; `Err(seconds)` says how long until the client
    /// may try again.
    pub(crate) fn check(&self, client: K, limit: u32) -> Result<(), u64> {
        let elapsed = self.start.elapsed();
        let window_secs = self.window.as_secs().max(1);
        let index = elapsed.as_secs() / window_secs;
        if self.counts.len() > SWEEP_ABOVE {
            self.counts.retain(|_, (w, _)| *w == index);
        }
        let mut entry = self.counts.entry(client).or_insert((index, 0));
        if entry.0 != index {
            *entry = (index, 0);
        }
        if entry.1 >= limit {
            return Err((index + 1) * window_secs - elapsed.as_secs());
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_per_client() {
        let limiter = RateLimiter::new(Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        assert!(limiter.check(a, 2).is_ok());
        assert!(limiter.check(a, 2).is_ok());
        let retry = limiter.check(a, 2).unwrap_err();
        assert!((1..=60).contains(&retry));
        assert!(limiter.check(b, 2).is_ok());
    }

    #[test]
    fn a_changed_limit_applies_to_the_counts_so_far() {
        let limiter = RateLimiter::new(Duration::from_secs(60));
        assert!(limiter.check("a", 3).is_ok());
        assert!(limiter.check("a", 3).is_ok());
        assert!(
            limiter.check("a", 1).is_err(),
            "lowered below what was spent"
        );
        assert!(limiter.check("a", 3).is_ok(), "raised again");
        assert!(limiter.check("a", 3).is_err());
    }
}
