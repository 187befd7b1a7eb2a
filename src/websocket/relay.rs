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
//! The pumps copy frames without decoding them ([`wire`], [`crate::websocket::scan`]): a
//! client's frames go up still masked with its key, the upstream's go down as they are,
//! and every header on the way is checked and written by us.
//!
//! The clocks cannot be suspended from outside: a pump blocked in a send to a peer that
//! stopped reading is only one branch of the `select!`, the clocks are others. When one
//! fires, the pumps stop where they are (the unsent rest stays queued) and both closes go
//! out together, bounded by [`CLOSE_GRACE`]: a close waits for the frame in flight to that
//! side to end (finished from its source), so it always lands between frames; a side that
//! reads gets its close at once, a side that does not is cut when the grace ends.
//! Backpressure is kept: a pump reads again only once what it read was sent, so a session
//! buffers at most one read per direction, and nothing at all while idle.
//!
//! Timers live in tokio's shared wheel and move only when they fire: a message costs no
//! timer work, and thousands of open sessions sit idle for free.

use std::future::poll_fn;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::auth::claims::Claims;
use crate::auth::key_board::KeyWatch;
use crate::auth::revocation::{Revocations, Revoked};
use crate::websocket::frame;
use ending::{plan, Ending, Farewell};
use tally::Tally;
use wire::{Bye, Wire};

pub(crate) type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Close code for an authentication ending (expired or revoked token), to both sides.
pub(crate) const CLOSE_UNAUTHORIZED: u16 = 4401;

/// gatehouse's own close codes (4401, 4403 and room around them). A client's close in this
/// range reaches the upstream as [`CLOSE_REWRITTEN`] without its reason, so an upstream can
/// trust that a 44xx close came from gatehouse.
pub(crate) const RESERVED_CLOSE_CODES: RangeInclusive<u16> = 4400..=4499;
pub(crate) const CLOSE_REWRITTEN: u16 = 4000;

/// How long a close may take to go out before the socket is simply dropped.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What a session needs besides its two sockets.
pub(crate) struct Session {
    /// When the token stops being valid (`exp` + leeway), if the route closes on expiry.
    pub deadline: Option<Instant>,
    /// Revocations to watch for, if the route closes on expiry and the caller has a token.
    pub revocation: Option<RevocationWatch>,
    /// The key that verified the token, if the route closes on expiry and it was a JWT.
    pub key: Option<KeyWatch>,
    /// Quiet for this long ends the session; a send pending this long cuts its peer.
    pub idle_timeout: Duration,
    /// The route's `max_lifetime` from the start of the session, if it has one.
    pub lifetime_end: Option<Instant>,
    pub drain: CancellationToken,
    /// The route's limit on one message, summed over its fragments.
    pub max_message_bytes: usize,
}

/// How and why a session ended, for the access log and metrics.
#[derive(Debug, Default, Clone)]
pub(crate) struct SessionEnd {
    pub reason: &'static str,
    pub code: Option<u16>,
    pub client_bytes: u64,
    pub upstream_bytes: u64,
    pub messages: u64,
}

/// The caller's claims and the feed of revocations as they are applied.
pub(crate) struct RevocationWatch {
    pub claims: Arc<Claims>,
    pub events: broadcast::Receiver<Revoked>,
    pub revocations: Arc<Revocations>,
}

impl RevocationWatch {
    /// Subscribes now, before the view is read (in [`revoked`](Self::revoked)), so no
    /// revocation falls between the two.
    pub(crate) fn new(claims: Arc<Claims>, revocations: &Arc<Revocations>) -> RevocationWatch {
        RevocationWatch {
            claims,
            events: revocations.subscribe(),
            revocations: revocations.clone(),
        }
    }

    /// Resolves when a revocation covering this caller arrives; never, without a watch.
    /// The view is read once first: a revocation applied after the caller was
    /// authenticated and before the watch subscribed (while the upstream connected and
    /// answered `101`) sent its event to nobody here.
    pub(crate) async fn revoked(watch: &mut Option<RevocationWatch>) {
        let Some(w) = watch else {
            return std::future::pending().await;
        };
        if w.revocations.is_revoked(&w.claims) {
            return;
        }
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
pub(crate) fn config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Wraps an upgraded connection; `Role::Server` faces the client, `Role::Client` the upstream.
pub(crate) async fn socket(io: Upgraded, role: Role, max_message_bytes: usize) -> Socket {
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

/// Relays until either side closes or the session must end; never returns an error.
pub(crate) async fn relay<C, U>(client: C, upstream: U, mut session: Session) -> SessionEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let tally = Tally::new();
    let mut wire = Wire::new(client, upstream, session.max_message_bytes);
    let ending = tokio::select! {
        e = poll_fn(|cx| wire.poll_pump(cx, &tally)) => e,
        e = clocks(&mut session, &tally) => e,
    };
    // The close a side sent is echoed back to it, as tungstenite answered one.
    let echo = match &ending {
        Ending::Closed(_, frame) => Some(frame.clone()),
        _ => None,
    };
    let plan = plan(ending);
    let mut byes = [
        bye(plan.client, echo.as_ref(), Side::Client),
        bye(plan.upstream, echo.as_ref(), Side::Upstream),
    ];
    let _ = tokio::time::timeout(CLOSE_GRACE, poll_fn(|cx| wire.poll_byes(cx, &mut byes))).await;
    let (client_bytes, upstream_bytes, messages) = wire.counts();
    SessionEnd {
        reason: plan.reason,
        code: plan.code,
        client_bytes,
        upstream_bytes,
        messages,
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
    let withdrawn = KeyWatch::withdrawn(&session.key);
    let drained = session.drain.cancelled();
    tokio::pin!(expiry, idle, revoked, withdrawn, drained);
    loop {
        tokio::select! {
            _ = &mut expiry => {
                return if Instant::now() >= token_end { Ending::Expired } else { Ending::Lifetime };
            }
            _ = &mut revoked => return Ending::Revoked,
            _ = &mut withdrawn => return Ending::KeyWithdrawn,
            _ = &mut drained => return Ending::Drain,
            _ = &mut idle => match tally.next_check(session.idle_timeout, Instant::now()) {
                Ok(next) => idle.as_mut().reset(next),
                Err(ending) => return ending,
            },
        }
    }
}

/// What is left to send a side once the session's ending is known.
fn bye(farewell: Farewell, echo: Option<&Option<CloseFrame>>, to: Side) -> Bye {
    match farewell {
        Farewell::Close(code, reason) => {
            Bye::Close(close_bytes(Some(&close_frame(code, reason)), to))
        }
        Farewell::Forward(frame) => Bye::Close(close_bytes(frame.as_ref(), to)),
        Farewell::Echo => match echo {
            Some(frame) => Bye::Close(close_bytes(frame.as_ref(), to)),
            None => Bye::Flush,
        },
        Farewell::Nothing => Bye::Done,
    }
}

/// A whole close frame for `to` (masked for the upstream).
fn close_bytes(close: Option<&CloseFrame>, to: Side) -> Vec<u8> {
    let mut payload = Vec::new();
    if let Some(f) = close {
        payload.extend_from_slice(&u16::from(f.code).to_be_bytes());
        payload.extend_from_slice(f.reason.as_bytes());
    }
    frame::control(frame::OP_CLOSE, &payload, wire::mask_for(to))
}

fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    }
}

/// Sends a close frame to a client and flushes, bounded: a peer that stopped reading
/// cannot hold us.
pub(crate) async fn close<S>(client: &mut S, code: u16, reason: &str)
where
    S: AsyncWrite + Unpin,
{
    let bytes = close_bytes(Some(&close_frame(code, reason)), Side::Client);
    let send = async {
        client.write_all(&bytes).await?;
        client.flush().await
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, send).await;
}

mod ending;
mod tally;
#[cfg(test)]
mod tests;
mod wire;
