//! What the pumps and the clocks share: when anything was last read, and since when a
//! send to each side has been waiting.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::Instant;

use super::{Ending, Side};

/// What the pumps and the clocks share. One task uses it, but the session future must be
/// `Send`, hence atomics (relaxed); instants are kept as nanoseconds since `start`.
pub(super) struct Tally {
    pub(super) start: Instant,
    last_read: AtomicU64,
    /// Per destination side: when the send now pending to it began; `NONE` when none is.
    sending_since: [AtomicU64; 2],
}

const NONE: u64 = u64::MAX;

impl Tally {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_read: AtomicU64::new(0),
            sending_since: [AtomicU64::new(NONE), AtomicU64::new(NONE)],
        }
    }

    pub(super) fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(NONE - 1)
    }

    pub(super) fn instant(&self, stamp: u64) -> Instant {
        self.start + Duration::from_nanos(stamp)
    }

    pub(super) fn read_at(&self, at: Instant) {
        self.last_read.store(self.stamp(at), Relaxed);
    }

    pub(super) fn sending(&self, to: Side, since: Option<Instant>) {
        let stamp = since.map_or(NONE, |at| self.stamp(at));
        self.sending_since[to as usize].store(stamp, Relaxed);
    }

    /// The next moment the idle/stall timer must look again, or the ending it found.
    pub(super) fn next_check(&self, idle: Duration, now: Instant) -> Result<Instant, Ending> {
        let quiet_until = self.instant(self.last_read.load(Relaxed)) + idle;
        if quiet_until <= now {
            return Err(Ending::Idle);
        }
        let mut next = quiet_until;
        for side in [Side::Client, Side::Upstream] {
            let since = self.sending_since[side as usize].load(Relaxed);
            if since != NONE {
                let stalled_at = self.instant(since) + idle;
                if stalled_at <= now {
                    return Err(Ending::Stalled(side));
                }
                next = next.min(stalled_at);
            }
        }
        Ok(next)
    }
}
