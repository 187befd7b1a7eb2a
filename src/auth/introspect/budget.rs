//! The calls one introspection endpoint may receive: a token bucket refilled at
//! `max_calls_per_second`, holding at most one second's worth. Only cache misses reach it,
//! so it bounds what made-up tokens can cost the IdP, whatever their number.

use std::sync::Mutex;
use std::time::Instant;

pub(super) struct CallBudget {
    per_second: f64,
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl CallBudget {
    pub(super) fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second);
        Self {
            per_second,
            state: Mutex::new(Bucket {
                tokens: per_second,
                at: Instant::now(),
            }),
        }
    }

    /// Takes one call from the budget; false when it is spent for now.
    pub(super) fn take(&self) -> bool {
        // Never held across an await; a poisoned lock still holds two plain numbers.
        let mut bucket = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.per_second);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_gets_one_seconds_worth_then_nothing() {
        let budget = CallBudget::new(3);
        assert!((0..3).all(|_| budget.take()));
        assert!(!budget.take());
    }
}
