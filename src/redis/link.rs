//! The one command connection a [`super::RedisHandle`] shares, and when to make a new one.
//!
//! A connection that failed or timed out is dropped, never reused: after a failover behind
//! a proxy or VIP, or a partition that leaves the old socket silently dead, only a new
//! connection reaches a Redis that answers. Dialling waits between failed attempts
//! (doubling up to [`MAX_BACKOFF`]), so an outage costs one attempt per interval, not one
//! per request.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::{dial, StoreError};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Bounds how long after Redis returns the next attempt comes.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A connection and the number that tells it apart from the one that replaces it.
#[derive(Clone)]
pub(crate) struct Leased {
    pub(crate) id: u64,
    pub(crate) connection: MultiplexedConnection,
}

#[derive(Default)]
pub(crate) struct Link {
    current: Option<Leased>,
    made: u64,
    failed_dials: u32,
    next_dial: Option<Instant>,
}

impl Link {
    /// The current connection, or a new one unless the last attempt failed too recently.
    pub(crate) async fn get(&mut self, client: &redis::Client) -> Result<Leased, StoreError> {
        if let Some(leased) = &self.current {
            return Ok(leased.clone());
        }
        if self.next_dial.is_some_and(|at| Instant::now() < at) {
            return Err(StoreError);
        }
        match dial::commands(client).await {
            Ok(connection) => {
                self.made += 1;
                self.failed_dials = 0;
                self.next_dial = None;
                let leased = Leased {
                    id: self.made,
                    connection,
                };
                self.current = Some(leased.clone());
                Ok(leased)
            }
            Err(e) => {
                self.failed_dials = self.failed_dials.saturating_add(1);
                self.next_dial = Some(Instant::now() + backoff(self.failed_dials));
                Err(e)
            }
        }
    }

    /// Drops connection `id` if it is still the current one: requests that failed on it
    /// together must not drop the new connection one of them already made.
    pub(crate) fn discard(&mut self, id: u64) {
        if self.current.as_ref().is_some_and(|c| c.id == id) {
            self.current = None;
        }
    }
}

/// The wait after `failures` failed dials in a row.
pub(crate) fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(2), FIRST_BACKOFF * 2);
        assert_eq!(backoff(4), FIRST_BACKOFF * 8);
        assert_eq!(backoff(6), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
