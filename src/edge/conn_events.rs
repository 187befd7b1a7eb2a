//! What one connection's task does after an event on it: a drain, the close grace
//! running out, trouble (a stalled response, too many HTTP/2 resets) or an expired clock.
//! `listener.rs` runs the loop; the decisions, and what they count, are here.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::edge::activity::{Activity, Expiry, Trouble};
use crate::metrics::Metrics;
use crate::proxy::service::Conn;

/// What a connection's task waits for besides the connection itself.
pub(crate) enum Event {
    /// The drain ran out: drop.
    Cut,
    /// The drain began: close gracefully.
    Close,
    /// `close_grace` passed since the connection was asked to close.
    GraceOver,
    Trouble(Trouble),
    Expiry(Expiry),
}

/// The events a connection's task waits for, given whether (and by when) it is closing.
///
/// They wait in a `FuturesUnordered`, which polls only the one whose waker fired: the
/// connection task wakes several times per request, and polling every watcher each time
/// cost more than the request's own header rewrite.
pub(crate) fn watchers<'a>(
    activity: &'a Activity,
    drain: (&'a CancellationToken, &'a CancellationToken),
    closing: Option<Instant>,
    max_resets: u32,
) -> FuturesUnordered<BoxFuture<'a, Event>> {
    let (close, cut) = drain;
    let watch = FuturesUnordered::<BoxFuture<'a, Event>>::new();
    watch.push(Box::pin(async move {
        cut.cancelled().await;
        Event::Cut
    }));
    watch.push(Box::pin(async move {
        Event::Trouble(activity.trouble(max_resets).await)
    }));
    // Closing, the idle and header clocks have had their say; a client that stops reading
    // still loses the connection.
    let quiet = closing.is_none();
    watch.push(Box::pin(async move {
        Event::Expiry(activity.expired(quiet).await)
    }));
    match closing {
        None => watch.push(Box::pin(async move {
            close.cancelled().await;
            Event::Close
        })),
        Some(gone_by) => watch.push(Box::pin(async move {
            tokio::time::sleep_until(gone_by).await;
            Event::GraceOver
        })),
    }
    watch
}

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
