//! When a client connection has gone quiet for too long.
//!
//! Two clocks run while no request is in flight on a connection:
//!
//! - `idle_timeout` from the end of the last response (or the accept): a keep-alive
//!   connection nobody uses is closed gracefully;
//! - `header_read_timeout` from the first byte of the next request: a head that trickles
//!   in (slowloris) gets the connection dropped.
//!
//! hyper has only the second, and starts it when it begins waiting for a head, so an idle
//! HTTP/1.1 connection would be cut after the header timeout and an idle HTTP/2 one never.
//! While a request is in flight neither clock runs: a long SSE response or a slow upstream
//! is bounded by the route's timeouts, not by these. Once a connection has carried an
//! HTTP/2 request only the idle clock runs: between requests an HTTP/2 client sends frames
//! that are not requests (WINDOW_UPDATE, PING, SETTINGS acks), which must not start the
//! header clock and get an idle connection dropped.
//!
//! [`Tracked`] wraps the connection's IO to see the first byte (and to show every byte to
//! the framing check, see `framing.rs`); [`InFlight`] guards ride on response bodies (see
//! `response_clock.rs`), so a request counts until its body is done, not until its headers
//! are.
//!
//! The same record collects what the connection task must act on besides the clocks
//! ([`Trouble`]): an HTTP/2 request dropped before its response ended (the client reset
//! the stream) counts toward `http2_max_resets`, and a response abandoned for a client that
//! stopped reading is reported (on HTTP/1.1 the connection cannot carry on after it).

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::edge::framing::Framing;

/// Which clock ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No request for `idle_timeout`: close gracefully.
    Idle,
    /// A request head started but did not arrive within `header_read_timeout`: drop.
    Head,
}

/// Something the connection task must act on now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// A response was abandoned after `write_timeout`; `cut` when the connection cannot
    /// carry on (HTTP/1.1, the rest of that response will never be written).
    Stalled { cut: bool },
    /// More HTTP/2 streams were reset after acceptance than `http2_max_resets`; returned
    /// again for every further reset.
    TooManyResets,
}

/// The activity of one connection. Times are milliseconds since `base`.
pub struct Activity {
    base: Instant,
    in_flight: AtomicUsize,
    idle_since: AtomicU64,
    /// When the first byte arrived after the connection went idle, plus one (0 = not yet).
    head_started: AtomicU64,
    changed: Notify,
    framing: Mutex<Framing>,
    /// Cleared once the framing check has turned itself off: reads skip the lock.
    scanning: AtomicBool,
    /// Set by the first HTTP/2 request: from then on only the idle clock runs.
    http2: AtomicBool,
    /// HTTP/2 requests dropped before their response ended.
    resets: AtomicU32,
    /// `resets` when [`Trouble::TooManyResets`] was last returned.
    resets_reported: AtomicU32,
    stalled_http1: AtomicBool,
    stalled_http2: AtomicU32,
    trouble: Notify,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            changed: Notify::new(),
            framing: Mutex::new(Framing::default()),
            scanning: AtomicBool::new(true),
            http2: AtomicBool::new(false),
            resets: AtomicU32::new(0),
            resets_reported: AtomicU32::new(0),
            stalled_http1: AtomicBool::new(false),
            stalled_http2: AtomicU32::new(0),
            trouble: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    /// A request reached the service; it counts until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>, version: http::Version) -> InFlight {
        let http2 = version == http::Version::HTTP_2;
        if http2 {
            self.http2.store(true, Ordering::Release);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Release);
        InFlight {
            activity: self.clone(),
            http2,
            finished: AtomicBool::new(false),
        }
    }

    /// Requests whose response has not ended yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Resolves when the connection task must act; see [`Trouble`].
    pub async fn trouble(&self, max_resets: u32) -> Trouble {
        loop {
            let notified = self.trouble.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.stalled_http1.swap(false, Ordering::AcqRel) {
                return Trouble::Stalled { cut: true };
            }
            let taken = self
                .stalled_http2
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            if taken.is_ok() {
                return Trouble::Stalled { cut: false };
            }
            let resets = self.resets.load(Ordering::Acquire);
            if resets > max_resets && self.resets_reported.swap(resets, Ordering::AcqRel) < resets {
                return Trouble::TooManyResets;
            }
            notified.await;
        }
    }

    fn stalled(&self, http2: bool) {
        if http2 {
            self.stalled_http2.fetch_add(1, Ordering::AcqRel);
        } else {
            self.stalled_http1.store(true, Ordering::Release);
        }
        self.trouble.notify_waiters();
    }

    fn read(&self, bytes: &[u8]) {
        self.read_some();
        if self.scanning.load(Ordering::Relaxed) {
            let mut framing = self.framing.lock().unwrap_or_else(PoisonError::into_inner);
            framing.feed(bytes);
            if framing.is_off() {
                self.scanning.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Whether the HTTP/1 request hyper just parsed gave both `Content-Length` and
    /// `Transfer-Encoding`. Called once per HTTP/1 request, in order.
    pub fn next_is_ambiguous(&self) -> bool {
        self.framing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_is_ambiguous()
    }

    /// Reports the answer to the HTTP/1 request hyper handed over last, in order, so the
    /// framing check knows whether the connection switched protocols.
    pub fn answered(&self, method: &http::Method, status: http::StatusCode) {
        if !self.scanning.load(Ordering::Relaxed) {
            return;
        }
        let switched = status == http::StatusCode::SWITCHING_PROTOCOLS
            || (method == http::Method::CONNECT && status.is_success());
        let mut framing = self.framing.lock().unwrap_or_else(PoisonError::into_inner);
        framing.answered(switched);
        if framing.is_off() {
            self.scanning.store(false, Ordering::Relaxed);
        }
    }

    fn read_some(&self) {
        // Two loads per read on the hot path; the store and wake-up happen once per request.
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Acquire) == 0
            && !self.http2.load(Ordering::Relaxed)
        {
            self.head_started
                .store(self.now_ms().saturating_add(1), Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// Resolves when one of the clocks runs out; pending for as long as requests are in flight.
    pub async fn expired(&self, idle_timeout: Duration, header_timeout: Duration) -> Expiry {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the state is read, so a change in between is not missed.
            changed.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) > 0 {
                changed.await;
                continue;
            }
            let (deadline, expiry) = match self.head_started.load(Ordering::Acquire) {
                0 => {
                    let since = self.idle_since.load(Ordering::Acquire);
                    (self.at(since) + idle_timeout, Expiry::Idle)
                }
                started => (self.at(started - 1) + header_timeout, Expiry::Head),
            };
            if Instant::now() >= deadline {
                return expiry;
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// A request in flight; dropping it (with the response body) may start the idle clock.
///
/// Dropped before [`InFlight::finish`] on HTTP/2, the stream was reset by the client (or
/// the connection ended): it counts toward `http2_max_resets`.
pub struct InFlight {
    activity: Arc<Activity>,
    http2: bool,
    finished: AtomicBool,
}

impl InFlight {
    /// The response ended (or was ended by us): dropping this is not a reset.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::Release);
    }

    /// The client stopped reading and the response was abandoned.
    pub fn stalled(&self) {
        self.finish();
        self.activity.stalled(self.http2);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.activity;
        if self.http2 && !self.finished.load(Ordering::Acquire) {
            activity.resets.fetch_add(1, Ordering::AcqRel);
            activity.trouble.notify_waiters();
        }
        activity
            .idle_since
            .store(activity.now_ms(), Ordering::Release);
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity.changed.notify_one();
        }
    }
}

/// A connection's IO, noticing the first byte of each request head.
pub struct Tracked<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I> Tracked<I> {
    pub fn new(io: I, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read(&buf.filled()[before..]);
        }
        poll
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_clock_runs_only_between_requests() {
        let activity = Activity::new();
        let guard = activity.begin(http::Version::HTTP_11);
        let waiting = tokio::time::timeout(
            Duration::from_secs(100),
            activity.expired(Duration::from_secs(5), Duration::from_secs(1)),
        );
        assert!(waiting.await.is_err(), "expired with a request in flight");
        drop(guard);
        let started = Instant::now();
        let expiry = activity
            .expired(Duration::from_secs(5), Duration::from_secs(1))
            .await;
        assert_eq!(expiry, Expiry::Idle);
        assert_eq!(started.elapsed().as_secs(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_http2_request_frames_between_requests_leave_the_idle_clock() {
        let activity = Activity::new();
        drop(activity.begin(http::Version::HTTP_2));
        let started = Instant::now();
        activity.read_some();
        let expiry = activity
            .expired(Duration::from_secs(60), Duration::from_secs(2))
            .await;
        assert_eq!(expiry, Expiry::Idle);
        assert_eq!(started.elapsed().as_secs(), 60);
    }

    #[tokio::test(start_paused = true)]
    async fn a_started_head_switches_to_the_header_clock() {
        let activity = Activity::new();
        let started = Instant::now();
        let expired = activity.expired(Duration::from_secs(60), Duration::from_secs(2));
        tokio::pin!(expired);
        tokio::select! {
            _ = &mut expired => panic!("expired early"),
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        activity.read_some();
        assert_eq!(expired.await, Expiry::Head);
        assert_eq!(started.elapsed().as_secs(), 12);
    }
}
