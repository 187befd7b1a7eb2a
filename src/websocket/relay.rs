//! One WebSocket session: two pumps (client → upstream, upstream → client) and the
//! session's clocks, raced in one `select!`. Whichever finishes first decides how the
//! session ends; then both sides get their close at once, each under its own deadline.
//!
//! ```text
//!   Open ──┬─ Close(code) from either side: forwarded (a client's 4400–4499 reaches the
//!          │    upstream as 4000), its echo flushed back, then Closed(by that side)
//!          ├─ exp + leeway reached:   4401 "token expired" to both
//!          ├─ the token is revoked:   4401 "token revoked" to both
//!          ├─ message over the limit: 1009 to both
//!          ├─ nothing read either way for idle_timeout: 1001 "idle timeout" to both
//!          ├─ max_lifetime reached:   1001 "session lifetime reached" to both
//!          ├─ drain (shutdown):       1001 "going away" to both
//!          ├─ a send not done within idle_timeout: the sender's side gets 1011, the
//!          │    peer that stopped reading is cut
//!          └─ a socket error:         the other side gets 1011 (send failed) / 1001 (gone)
//! ```
//!
//! The clocks cannot be suspended from outside: a pump blocked in a send to a peer that
//! stopped reading is only one branch of the `select!`, the clocks are others. When one
//! fires, the pumps are dropped mid-send (the unsent rest of a frame stays in tungstenite's
//! buffer, so the close still follows whole frames) and both closes go out together, each
//! bounded by [`CLOSE_GRACE`]: a side that reads gets its close at once, a side that does
//! not is cut when the grace ends. Backpressure is kept: a pump reads its next message only
//! once the previous one was sent, so a session buffers at most one message per direction.
//!
//! Timers live in tokio's shared wheel and move only when they fire: a message costs no
//! timer work, and thousands of open sessions sit idle for free.

use std::ops::RangeInclusive;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::auth::claims::Claims;
use crate::auth::revocation::{Revocations, Revoked};
use ending::{plan, Ending, Farewell};

pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Close code for an authentication ending (expired or revoked token), to both sides.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;

/// gatehouse's own close codes (4401, 4403 and room around them). A client's close in this
/// range reaches the upstream as [`CLOSE_REWRITTEN`] without its reason, so an upstream can
/// trust that a 44xx close came from gatehouse.
pub const RESERVED_CLOSE_CODES: RangeInclusive<u16> = 4400..=4499;
pub const CLOSE_REWRITTEN: u16 = 4000;

/// How long a close may take to go out before the socket is simply dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What a session needs besides its two sockets.
pub struct Session {
    /// When the token stops being valid (`exp` + leeway), if the route closes on expiry.
    pub deadline: Option<Instant>,
    /// Revocations to watch for, if the route closes on expiry and the caller has a token.
    pub revocation: Option<RevocationWatch>,
    /// Quiet for this long ends the session; a send pending this long cuts its peer.
    pub idle_timeout: Duration,
    /// The route's `max_lifetime` from the start of the session, if it has one.
    pub lifetime_end: Option<Instant>,
    pub drain: CancellationToken,
}

/// How and why a session ended, for the access log and metrics.
#[derive(Debug, Default, Clone)]
pub struct SessionEnd {
    pub reason: &'static str,
    pub code: Option<u16>,
    pub client_bytes: u64,
    pub upstream_bytes: u64,
    pub messages: u64,
}

/// The caller's claims and the feed of revocations as they are applied.
pub struct RevocationWatch {
    pub claims: Arc<Claims>,
    pub events: broadcast::Receiver<Revoked>,
    pub revocations: Arc<Revocations>,
}

impl RevocationWatch {
    /// Resolves when a revocation covering this caller arrives; never, without a watch.
    async fn revoked(watch: &mut Option<RevocationWatch>) {
        let Some(w) = watch else {
            return std::future::pending().await;
        };
        loop {
            match w.events.recv().await {
                Ok(entry) if entry.matches(&w.claims) => return,
                Ok(_) => {}
                // Missed some: ask the view directly.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if w.revocations.is_revoked(&w.claims) {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
            }
        }
    }
}

/// Small buffers: an idle session should cost kilobytes, not tungstenite's default 2×128 KiB.
/// Writes go out per message (`send` flushes), so a write buffer would only hold memory.
pub fn config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Wraps an upgraded connection; `Role::Server` faces the client, `Role::Client` the upstream.
pub async fn socket(io: Upgraded, role: Role, max_message_bytes: usize) -> Socket {
    WebSocketStream::from_raw_socket(TokioIo::new(io), role, Some(config(max_message_bytes))).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client = 0,
    Upstream = 1,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }
}

/// What the pumps and the clocks share. One task uses it, but the session future must be
/// `Send`, hence atomics (relaxed); instants are kept as nanoseconds since `start`.
struct Tally {
    start: Instant,
    last_read: AtomicU64,
    /// Per destination side: when the send now pending to it began; `NONE` when none is.
    sending_since: [AtomicU64; 2],
    bytes_from: [AtomicU64; 2],
    messages: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Tally {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_read: AtomicU64::new(0),
            sending_since: [AtomicU64::new(NONE), AtomicU64::new(NONE)],
            bytes_from: [AtomicU64::new(0), AtomicU64::new(0)],
            messages: AtomicU64::new(0),
        }
    }

    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(NONE - 1)
    }

    fn instant(&self, stamp: u64) -> Instant {
        self.start + Duration::from_nanos(stamp)
    }

    fn read_at(&self, at: Instant) {
        self.last_read.store(self.stamp(at), Relaxed);
    }

    fn sending(&self, to: Side, since: Option<Instant>) {
        let stamp = since.map_or(NONE, |at| self.stamp(at));
        self.sending_since[to as usize].store(stamp, Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    /// The next moment the idle/stall timer must look again, or the ending it found.
    fn next_check(&self, idle: Duration, now: Instant) -> Result<Instant, Ending> {
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

/// Relays until either side closes or the session must end; never returns an error.
pub async fn relay<C, U>(
    client: WebSocketStream<C>,
    upstream: WebSocketStream<U>,
    mut session: Session,
) -> SessionEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let tally = Tally::new();
    let (mut client_tx, mut client_rx) = client.split();
    let (mut upstream_tx, mut upstream_rx) = upstream.split();
    let ending = tokio::select! {
        e = pump(&mut client_rx, &mut upstream_tx, Side::Client, &tally) => e,
        e = pump(&mut upstream_rx, &mut client_tx, Side::Upstream, &tally) => e,
        e = clocks(&mut session, &tally) => e,
    };
    let plan = plan(ending);
    tokio::join!(
        farewell(&mut client_tx, plan.client),
        farewell(&mut upstream_tx, plan.upstream),
    );
    SessionEnd {
        reason: plan.reason,
        code: plan.code,
        client_bytes: Tally::get(&tally.bytes_from[Side::Client as usize]),
        upstream_bytes: Tally::get(&tally.bytes_from[Side::Upstream as usize]),
        messages: Tally::get(&tally.messages),
    }
}

/// Moves messages from one side to the other until something ends the session.
async fn pump<F, T>(
    from: &mut SplitStream<WebSocketStream<F>>,
    to: &mut SplitSink<WebSocketStream<T>, Message>,
    side: Side,
    tally: &Tally,
) -> Ending
where
    F: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let message = from.next().await;
        tally.read_at(Instant::now());
        let message = match message {
            Some(Ok(Message::Close(frame))) => return Ending::Closed(side, frame),
            Some(Ok(Message::Frame(_))) => continue,
            Some(Ok(message)) => message,
            Some(Err(WsError::Capacity(_))) => return Ending::TooBig,
            Some(Err(_)) | None => return Ending::Gone(side),
        };
        tally.bytes_from[side as usize].fetch_add(message.len() as u64, Relaxed);
        tally.messages.fetch_add(1, Relaxed);
        tally.sending(side.other(), Some(Instant::now()));
        let sent = to.send(message).await;
        tally.sending(side.other(), None);
        if sent.is_err() {
            return Ending::Unwritable(side.other());
        }
    }
}

/// Resolves when expiry, lifetime, revocation, drain, idleness or a stalled send ends
/// the session.
async fn clocks(session: &mut Session, tally: &Tally) -> Ending {
    let far = Instant::now() + Duration::from_secs(86400 * 365);
    // One timer for both ends a session has in advance; which one it was is decided when it fires.
    let token_end = session.deadline.unwrap_or(far);
    let expiry = tokio::time::sleep_until(token_end.min(session.lifetime_end.unwrap_or(far)));
    let idle = tokio::time::sleep(session.idle_timeout);
    let revoked = RevocationWatch::revoked(&mut session.revocation);
    let drained = session.drain.cancelled();
    tokio::pin!(expiry, idle, revoked, drained);
    loop {
        tokio::select! {
            _ = &mut expiry => {
                return if Instant::now() >= token_end { Ending::Expired } else { Ending::Lifetime };
            }
            _ = &mut revoked => return Ending::Revoked,
            _ = &mut drained => return Ending::Drain,
            _ = &mut idle => match tally.next_check(session.idle_timeout, Instant::now()) {
                Ok(next) => idle.as_mut().reset(next),
                Err(ending) => return ending,
            },
        }
    }
}

async fn farewell<S>(sink: &mut SplitSink<WebSocketStream<S>, Message>, farewell: Farewell)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let message = match farewell {
        Farewell::Close(code, reason) => Some(Message::Close(Some(close_frame(code, reason)))),
        Farewell::Forward(frame) => Some(Message::Close(frame)),
        Farewell::Echo => None,
        Farewell::Nothing => return,
    };
    let work = async {
        if let Some(message) = message {
            let _ = sink.send(message).await;
        }
        let _ = sink.flush().await;
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, work).await;
}

fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    }
}

/// Sends a close frame and flushes, bounded: a peer that stopped reading cannot hold us.
pub async fn close<S>(socket: &mut WebSocketStream<S>, code: u16, reason: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = close_frame(code, reason);
    let _ = tokio::time::timeout(CLOSE_GRACE, socket.close(Some(frame))).await;
}

mod ending;
#[cfg(test)]
mod tests;
