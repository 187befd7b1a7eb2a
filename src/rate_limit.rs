//! A per-client fixed-window counter: at most `limit` events per client address per
//! window. Coarse on purpose (a burst at a window edge may reach twice the limit); it
//! exists to keep one client from flooding an endpoint, not to meter fairly.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

pub struct RateLimiter {
    limit: u32,
    window: Duration,
    start: Instant,
    counts: DashMap<IpAddr, (u64, u32)>,
}

/// Above this many tracked clients, windows that have passed are dropped.
const SWEEP_ABOVE: usize = 10_000;

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            start: Instant::now(),
            counts: DashMap::new(),
        }
    }

    /// Counts one event; `Err(seconds)` says how long until the client may try again.
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
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
        if entry.1 >= self.limit {
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
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_ok());
        let retry = limiter.check(a).unwrap_err();
        assert!((1..=60).contains(&retry));
        assert!(limiter.check(b).is_ok());
    }
}
