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
//! While a request is in flight neither of these runs: a long SSE response or a slow
//! upstream is bounded by the route's timeouts, not by these. Once a connection has carried
//! an HTTP/2 request only the idle clock runs: between requests an HTTP/2 client sends
//! frames that are not requests (WINDOW_UPDATE, PING, SETTINGS acks), which must not start
//! the header clock and get an idle connection dropped.
//!
//! A third clock runs whenever it must, in flight or not: `write_timeout` from the moment a
//! write to the client found its socket full, until a write goes through again (nginx's
//! `send_timeout`). A client that stops reading gets the connection dropped, which drops
//! the response and releases its upstream connection.
//!
//! One timer serves the three clocks, and it is lazy: a deadline that moves later (the next
//! request's head, the end of the next response) does not touch it. When it fires early,
//! the watcher reads the clocks again and sets it for the real deadline. Only a deadline
//! earlier than the timer wakes the watcher (`armed`), so a busy keep-alive connection pays
//! no timer and no wake-up per request.
//!
//! [`Tracked`] wraps the connection's IO to see the first byte and blocked writes (and to
//! show every byte to the framing check, see `framing.rs`); [`InFlight`] guards ride on
//! response bodies (see `response_clock.rs`), so a request counts until its body is done,
//! not until its headers are.
//!
//! The same record collects what the connection task must act on besides the clocks
//! ([`Trouble`]): an HTTP/2 request dropped before its response ended (the client reset
//! the stream) counts toward `http2_max_resets`, and an HTTP/2 response abandoned for a
//! stream that granted no window (`response_clock.rs`) is reported.

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
pub(crate) enum Expiry {
    /// No request for `idle_timeout`: close gracefully.
    Idle,
    /// A request head started but did not arrive within `header_read_timeout`: drop.
    Head,
    /// A write to the client has been blocked for `write_timeout`: drop.
    Write,
}

/// The connection's three clocks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clocks {
    pub idle: Duration,
    pub header: Duration,
    pub write: Duration,
}

/// `armed` when the watcher has no timer set: every earlier deadline wakes it.
const UNARMED: u64 = u64::MAX;

/// Something the connection task must act on now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trouble {
    /// An HTTP/2 response was abandoned after `write_timeout` without window; the
    /// connection carries on.
    Stalled,
    /// More HTTP/2 streams were reset after acceptance than `http2_max_resets`; returned
    /// again for every further reset.
    TooManyResets,
}

/// The activity of one connection. Times are milliseconds since `base`.
pub(crate) struct Activity {
    base: Instant,
    /// The clocks' lengths in ms.
    idle_ms: u64,
    header_ms: u64,
    write_ms: u64,
    in_flight: AtomicUsize,
    idle_since: AtomicU64,
    /// When the first byte arrived after the connection went idle, plus one (0 = not yet).
    head_started: AtomicU64,
    /// When a write found the client's socket full, plus one (0 = writes go through).
    write_blocked: AtomicU64,
    /// When the watcher's timer fires ([`UNARMED`]: it has none). A clock that now runs out
    /// before that wakes it through `changed`; one that runs out later is found when the
    /// timer fires.
    armed: AtomicU64,
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
    stalled_http2: AtomicU32,
    trouble: Notify,
}

impl Activity {
    pub(crate) fn new(clocks: Clocks) -> Arc<Self> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Arc::new(Self {
            base: Instant::now(),
            idle_ms: ms(clocks.idle),
            header_ms: ms(clocks.header),
            write_ms: ms(clocks.write),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
            armed: AtomicU64::new(UNARMED),
            changed: Notify::new(),
            framing: Mutex::new(Framing::default()),
            scanning: AtomicBool::new(true),
            http2: AtomicBool::new(false),
            resets: AtomicU32::new(0),
            resets_reported: AtomicU32::new(0),
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
    pub(crate) fn begin(self: &Arc<Self>, version: http::Version) -> InFlight {
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
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Resolves when the connection task must act; see [`Trouble`].
    pub(crate) async fn trouble(&self, max_resets: u32) -> Trouble {
        loop {
            let notified = self.trouble.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let taken = self
                .stalled_http2
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            if taken.is_ok() {
                return Trouble::Stalled;
            }
            let resets = self.resets.load(Ordering::Acquire);
            if resets > max_resets && self.resets_reported.swap(resets, Ordering::AcqRel) < resets {
                return Trouble::TooManyResets;
            }
            notified.await;
        }
    }

    fn stalled(&self) {
        self.stalled_http2.fetch_add(1, Ordering::AcqRel);
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
    pub(crate) fn next_is_ambiguous(&self) -> bool {
        self.framing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_is_ambiguous()
    }

    /// Reports the answer to the HTTP/1 request hyper handed over last, in order, so the
    /// framing check knows whether the connection switched protocols.
    pub(crate) fn answered(&self, method: &http::Method, status: http::StatusCode) {
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
        // Two loads per read on the hot path; the store happens once per request.
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Acquire) == 0
            && !self.http2.load(Ordering::Relaxed)
        {
            let now = self.now_ms();
            self.head_started
                .store(now.saturating_add(1), Ordering::SeqCst);
            self.wake_if_before(now.saturating_add(self.header_ms));
        }
    }

    /// A write to the client returned: `blocked` when its socket was full.
    fn wrote(&self, blocked: bool) {
        // One load per write on the hot path: writes to a reading client never block.
        let since = self.write_blocked.load(Ordering::Relaxed);
        if blocked && since == 0 {
            let now = self.now_ms();
            self.write_blocked
                .store(now.saturating_add(1), Ordering::SeqCst);
            self.wake_if_before(now.saturating_add(self.write_ms));
        } else if !blocked && since != 0 {
            self.write_blocked.store(0, Ordering::SeqCst);
        }
    }

    /// Wakes the watcher when a clock now runs out at `deadline`, before its timer fires.
    ///
    /// The clock's state is stored (SeqCst) before `armed` is read here, and the watcher
    /// stores `armed` before it reads the state: one of the two sees the other.
    fn wake_if_before(&self, deadline: u64) {
        if deadline < self.armed.load(Ordering::SeqCst) {
            self.changed.notify_one();
        }
    }

    /// The clock that runs out first, and when (ms since `base`); none while a request is
    /// in flight and its writes go through. `quiet`: also the idle and header clocks.
    fn next_deadline(&self, quiet: bool) -> Option<(u64, Expiry)> {
        let write = match self.write_blocked.load(Ordering::SeqCst) {
            0 => None,
            since => Some(((since - 1).saturating_add(self.write_ms), Expiry::Write)),
        };
        let between_requests = quiet && self.in_flight.load(Ordering::SeqCst) == 0;
        let quiet = between_requests.then(|| match self.head_started.load(Ordering::SeqCst) {
            0 => {
                let since = self.idle_since.load(Ordering::SeqCst);
                (since.saturating_add(self.idle_ms), Expiry::Idle)
            }
            started => ((started - 1).saturating_add(self.header_ms), Expiry::Head),
        });
        write.into_iter().chain(quiet).min_by_key(|(at, _)| *at)
    }

    /// Resolves when one of the clocks runs out: all three, or with `quiet` false (the
    /// connection is closing already) the write clock alone.
    pub(crate) async fn expired(&self, quiet: bool) -> Expiry {
        let timer = tokio::time::sleep_until(self.base);
        tokio::pin!(timer);
        // When the timer is set for (ms since `base`); `None` before it is set and once it fired.
        let mut set_for: Option<u64> = None;
        let mut woken = false;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            // From here any change wakes us, until `armed` holds the timer again below.
            self.armed.store(UNARMED, Ordering::SeqCst);
            let at = match self.next_deadline(quiet) {
                Some((at, expiry)) if self.now_ms() >= at => return expiry,
                Some((at, _)) => Some(at),
                // Woken by a head whose request has begun since: a busy keep-alive
                // connection. Without a nearer timer every later head (and the end of
                // every response) would wake us again for nothing; this one fires at most
                // once per clock length instead of a wake-up per request.
                None if quiet && woken => Some(
                    self.now_ms()
                        .saturating_add(self.header_ms.min(self.idle_ms)),
                ),
                None => None,
            };
            if let Some(at) = at.filter(|at| set_for.is_none_or(|set| set > *at)) {
                timer.as_mut().reset(self.at(at));
                set_for = Some(at);
            }
            if let Some(set) = set_for {
                self.armed.store(set, Ordering::SeqCst);
            }
            woken = tokio::select! {
                biased;
                () = changed.as_mut() => true,
                () = timer.as_mut(), if set_for.is_some() => {
                    set_for = None;
                    false
                }
            };
        }
    }
}

/// A request in flight; dropping it (with the response body) may start the idle clock.
///
/// Dropped before [`InFlight::finish`] on HTTP/2, the stream was reset by the client (or
/// the connection ended): it counts toward `http2_max_resets`.
pub(crate) struct InFlight {
    activity: Arc<Activity>,
    http2: bool,
    finished: AtomicBool,
}

impl InFlight {
    /// The response ended (or was ended by us): dropping this is not a reset.
    pub(crate) fn finish(&self) {
        self.finished.store(true, Ordering::Release);
    }

    /// The client granted no window and the HTTP/2 response was abandoned.
    pub(crate) fn stalled(&self) {
        self.finish();
        self.activity.stalled();
    }

    pub(crate) fn is_http2(&self) -> bool {
        self.http2
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.activity;
        if self.http2 && !self.finished.load(Ordering::Acquire) {
            activity.resets.fetch_add(1, Ordering::AcqRel);
            activity.trouble.notify_waiters();
        }
        let now = activity.now_ms();
        activity.idle_since.store(now, Ordering::SeqCst);
        if activity.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            activity.wake_if_before(now.saturating_add(activity.idle_ms));
        }
    }
}

/// A connection's IO, noticing the first byte of each request head.
pub(crate) struct Tracked<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I> Tracked<I> {
    pub(crate) fn new(io: I, activity: Arc<Activity>) -> Self {
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
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.activity.wrote(poll.is_pending());
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.activity.wrote(poll.is_pending());
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        // A flush that completes says nothing of the writes before it (plain TCP always
        // completes one); only a blocked one counts.
        if poll.is_pending() {
            this.activity.wrote(true);
        }
        poll
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
pub(crate) fn clocks(idle: u64, header: u64, write: u64) -> Clocks {
    Clocks {
        idle: Duration::from_secs(idle),
        header: Duration::from_secs(header),
        write: Duration::from_secs(write),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_clock_runs_only_between_requests() {
        let activity = Activity::new(clocks(5, 1, 30));
        let guard = activity.begin(http::Version::HTTP_11);
        let waiting = tokio::time::timeout(Duration::from_secs(100), activity.expired(true));
        assert!(waiting.await.is_err(), "expired with a request in flight");
        drop(guard);
        let started = Instant::now();
        assert_eq!(activity.expired(true).await, Expiry::Idle);
        assert_eq!(started.elapsed().as_secs(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_http2_request_frames_between_requests_leave_the_idle_clock() {
        let activity = Activity::new(clocks(60, 2, 30));
        drop(activity.begin(http::Version::HTTP_2));
        let started = Instant::now();
        activity.read_some();
        assert_eq!(activity.expired(true).await, Expiry::Idle);
        assert_eq!(started.elapsed().as_secs(), 60);
    }

    #[tokio::test(start_paused = true)]
    async fn a_started_head_switches_to_the_header_clock() {
        let activity = Activity::new(clocks(60, 2, 30));
        let started = Instant::now();
        let expired = activity.expired(true);
        tokio::pin!(expired);
        tokio::select! {
            _ = &mut expired => panic!("expired early"),
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        activity.read_some();
        assert_eq!(expired.await, Expiry::Head);
        assert_eq!(started.elapsed().as_secs(), 12);
    }

    /// The watcher keeps running across requests, as on a keep-alive connection: its timer
    /// fires at deadlines that have since moved, and it follows them.
    #[tokio::test(start_paused = true)]
    async fn a_running_watcher_follows_deadlines_that_moved_later() {
        let activity = Activity::new(clocks(5, 2, 30));
        let started = Instant::now();
        let expired = activity.expired(true);
        tokio::pin!(expired);
        let at = |secs| tokio::time::sleep_until(started + Duration::from_secs(secs));
        for (head, end) in [(1, 3), (4, 6), (8, 9)] {
            tokio::select! {
                _ = &mut expired => panic!("expired before the head at {head}s"),
                () = at(head) => activity.read_some(),
            }
            tokio::select! {
                _ = &mut expired => panic!("expired before the request at {head}s began"),
                () = at(head + 1) => {}
            }
            let request = activity.begin(http::Version::HTTP_11);
            tokio::select! {
                _ = &mut expired => panic!("expired with a request in flight"),
                () = at(end) => drop(request),
            }
        }
        assert_eq!(expired.await, Expiry::Idle);
        assert_eq!(started.elapsed().as_secs(), 9 + 5);
    }

    struct Wakes(AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Every wake-up of the watcher is a poll of the whole connection task: a busy
    /// keep-alive connection must not pay one per request.
    #[tokio::test(start_paused = true)]
    async fn a_busy_keep_alive_connection_does_not_wake_its_watcher_per_request() {
        use std::future::Future;
        let activity = Activity::new(clocks(60, 10, 30));
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut expired = std::pin::pin!(activity.expired(true));
        assert!(Future::poll(expired.as_mut(), &mut cx).is_pending());
        let mut seen = 0;
        // As the connection task does: the watcher is polled once woken.
        let mut poll_if_woken = |expired: Pin<&mut _>| {
            let now = wakes.0.load(Ordering::SeqCst);
            if now != seen {
                seen = now;
                assert!(Future::poll(expired, &mut cx).is_pending());
            }
        };
        // 25 s of requests, one every 10 ms, each head read in one piece.
        for _ in 0..2500 {
            tokio::time::advance(Duration::from_millis(5)).await;
            activity.read_some();
            let request = activity.begin(http::Version::HTTP_11);
            poll_if_woken(expired.as_mut());
            tokio::time::advance(Duration::from_millis(5)).await;
            drop(request);
            poll_if_woken(expired.as_mut());
        }
        let woken = wakes.0.load(Ordering::SeqCst);
        assert!(
            woken <= 10,
            "the watcher woke {woken} times for 2500 requests"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_write_runs_the_write_clock_also_in_flight() {
        let activity = Activity::new(clocks(60, 10, 3));
        let _request = activity.begin(http::Version::HTTP_11);
        let started = Instant::now();
        let expired = activity.expired(true);
        tokio::pin!(expired);
        activity.wrote(true);
        tokio::select! {
            _ = &mut expired => panic!("expired before write_timeout"),
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        // The client read a little: the clock starts again from the next blocked write.
        activity.wrote(false);
        activity.wrote(true);
        assert_eq!(expired.await, Expiry::Write);
        assert_eq!(started.elapsed().as_secs(), 2 + 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closing_connection_keeps_only_the_write_clock() {
        let activity = Activity::new(clocks(5, 1, 3));
        let waiting = tokio::time::timeout(Duration::from_secs(100), activity.expired(false));
        assert!(waiting.await.is_err(), "the idle clock ran while closing");
        let _request = activity.begin(http::Version::HTTP_11);
        activity.wrote(true);
        let started = Instant::now();
        assert_eq!(activity.expired(false).await, Expiry::Write);
        assert_eq!(started.elapsed().as_secs(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_that_go_through_run_no_clock() {
        let activity = Activity::new(clocks(60, 10, 3));
        let _request = activity.begin(http::Version::HTTP_11);
        for _ in 0..10 {
            activity.wrote(true);
            tokio::time::sleep(Duration::from_secs(2)).await;
            activity.wrote(false);
        }
        let waiting = tokio::time::timeout(Duration::from_secs(100), activity.expired(true));
        assert!(
            waiting.await.is_err(),
            "a client that reads lost its response"
        );
    }
}
