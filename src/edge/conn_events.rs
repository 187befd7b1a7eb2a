//! What one connection's task does after an event on it: a drain, the close grace
//! running out, trouble (a stalled response, too many HTTP/2 resets) or an expired clock.
//! `listener.rs` runs the loop; the decisions, and what they count, are here.

use std::time::Duration;

use tokio::time::Instant;

use crate::edge::activity::{Activity, Expiry, Trouble};
use crate::metrics::Metrics;
use crate::proxy::service::Conn;

/// What the connection task does after an event.
pub(crate) enum Step {
    Carry,
    /// Finish gracefully (GOAWAY), then `close_grace`.
    Close,
    /// Drop the connection now.
    Drop,
    /// Close gracefully, or drop when already closing: a client that carries on resetting
    /// streams after GOAWAY (and never acks the PING that completes it) gets no more.
    Abuse,
}

pub(crate) fn on_trouble(trouble: Trouble, metrics: &Metrics, conn: &Conn) -> Step {
    match trouble {
        Trouble::Stalled => {
            metrics.limit_hit("write_timeout");
            tracing::debug!(peer = %conn.peer, "HTTP/2 stream abandoned: no window");
            Step::Carry
        }
        Trouble::TooManyResets => {
            metrics.limit_hit("http2_max_resets");
            tracing::debug!(peer = %conn.peer, "too many streams reset; closing");
            Step::Abuse
        }
    }
}

pub(crate) fn on_expiry(expiry: Expiry, metrics: &Metrics, conn: &Conn) -> Step {
    match expiry {
        Expiry::Idle => {
            metrics.limit_hit("idle_timeout");
            Step::Close
        }
        Expiry::Head => {
            metrics.limit_hit("header_read_timeout");
            tracing::debug!(peer = %conn.peer, "request head not received in time");
            Step::Drop
        }
        Expiry::Write => {
            metrics.limit_hit("write_timeout");
            tracing::debug!(peer = %conn.peer, "client stopped reading the response");
            Step::Drop
        }
    }
}

/// What the loop does next: carry on, begin closing (HTTP/1.1 after the response in
/// flight, HTTP/2 with GOAWAY), or stop now.
pub(crate) enum Next {
    Carry,
    Shutdown,
    Stop,
}

/// Applies `step` to the connection's closing deadline.
pub(crate) fn next(step: Step, closing: &mut Option<Instant>, grace: Duration) -> Next {
    match step {
        Step::Carry => Next::Carry,
        Step::Drop => Next::Stop,
        Step::Abuse if closing.is_some() => Next::Stop,
        Step::Close if closing.is_some() => Next::Carry,
        Step::Close | Step::Abuse => {
            *closing = Some(Instant::now() + grace);
            Next::Shutdown
        }
    }
}

/// The close grace ran out. A request still in flight is bounded by its own clocks, so
/// the grace starts again; with none, the connection is dropped.
pub(crate) fn grace_over(
    activity: &Activity,
    metrics: &Metrics,
    conn: &Conn,
    closing: &mut Option<Instant>,
    grace: Duration,
) -> Step {
    if activity.in_flight() == 0 {
        metrics.limit_hit("close_grace");
        tracing::debug!(peer = %conn.peer, "connection did not close in time");
        Step::Drop
    } else {
        *closing = Some(Instant::now() + grace);
        Step::Carry
    }
}
