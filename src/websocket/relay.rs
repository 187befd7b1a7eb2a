//! One WebSocket session: frames relayed both ways in a single `select!` loop that also
//! watches the token's expiry, the idle timer and the drain.
//!
//! ```text
//!            client frame ──▶ upstream        upstream frame ──▶ client
//!   Open ──┬─ Close(code) from either side: forwarded, then Closed(by that side)
//!          ├─ exp + leeway reached:  4401 "token expired" to the client, 1000 upstream
//!          ├─ the token is revoked:  4401 "token revoked" to the client, 1000 upstream
//!          ├─ message over the limit: 1009 to both
//!          ├─ no message for idle_timeout: 1001 "idle timeout" to both
//!          ├─ max_lifetime reached:   1001 "session lifetime reached" to both
//!          ├─ drain (shutdown):       1001 "going away" to both
//!          └─ a socket error:         the other side gets 1011 (upstream) / closed
//! ```
//!
//! tokio's timer wheel is shared by every connection, so one deadline per session costs a
//! wheel slot, not a busy timer: thousands of open sessions sit idle for free.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::revocation::{Revocations, Revoked};
use crate::validate::Claims;

pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Close code for an authentication ending (expired or revoked token); 4000-4999 is ours.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;

/// What a session needs besides its two sockets.
pub struct Session {
    /// When the token stops being valid (`exp` + leeway), if the route closes on expiry.
    pub deadline: Option<Instant>,
    /// Revocations to watch for, if the route closes on expiry and the caller has a token.
    pub revocation: Option<RevocationWatch>,
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

/// Small buffers: an idle session should cost kilobytes, not tungstenite's default 2×128 KiB.
/// Writes go out per message (`send` flushes), so a write buffer would only hold memory.
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

enum Step {
    Continue,
    End(&'static str, Option<u16>),
}

/// Relays until either side closes or the session must end; never returns an error.
pub async fn relay(mut client: Socket, mut upstream: Socket, mut session: Session) -> SessionEnd {
    let mut end = SessionEnd::default();
    let far = Instant::now() + Duration::from_secs(86400 * 365);
    // Timers and watches are made once and polled in place: a message costs no timer work.
    // The idle timer is only moved when it fires early, from the time of the last message.
    // One timer for both ends a session has in advance; which one it was is decided when it fires.
    let token_end = session.deadline.unwrap_or(far);
    let expiry = tokio::time::sleep_until(token_end.min(session.lifetime_end.unwrap_or(far)));
    let idle = tokio::time::sleep(session.idle_timeout);
    let revoked = RevocationWatch::revoked(&mut session.revocation);
    let drained = session.drain.cancelled();
    tokio::pin!(expiry, idle, revoked, drained);
    let mut last_message = Instant::now();
    loop {
        let step = tokio::select! {
            message = client.next() => {
                last_message = Instant::now();
                forward(message, &mut upstream, &mut client, &mut end.client_bytes, &mut end.messages, "client").await
            }
            message = upstream.next() => {
                last_message = Instant::now();
                forward(message, &mut client, &mut upstream, &mut end.upstream_bytes, &mut end.messages, "upstream").await
            }
            _ = &mut expiry => {
                if Instant::now() >= token_end {
                    close(&mut client, CLOSE_UNAUTHORIZED, "token expired").await;
                    close(&mut upstream, 1000, "token expired").await;
                    Step::End("token_expired", Some(CLOSE_UNAUTHORIZED))
                } else {
                    close(&mut client, 1001, "session lifetime reached").await;
                    close(&mut upstream, 1001, "session lifetime reached").await;
                    Step::End("max_lifetime", Some(1001))
                }
            }
            _ = &mut revoked => {
                close(&mut client, CLOSE_UNAUTHORIZED, "token revoked").await;
                close(&mut upstream, 1000, "token revoked").await;
                Step::End("token_revoked", Some(CLOSE_UNAUTHORIZED))
            }
            _ = &mut idle => {
                let quiet_until = last_message + session.idle_timeout;
                if quiet_until > Instant::now() {
                    idle.as_mut().reset(quiet_until);
                    Step::Continue
                } else {
                    close(&mut client, 1001, "idle timeout").await;
                    close(&mut upstream, 1001, "idle timeout").await;
                    Step::End("idle_timeout", Some(1001))
                }
            }
            _ = &mut drained => {
                close(&mut client, 1001, "going away").await;
                close(&mut upstream, 1001, "going away").await;
                Step::End("shutdown", Some(1001))
            }
        };
        if let Step::End(reason, code) = step {
            end.reason = reason;
            end.code = code;
            return end;
        }
    }
}

/// Moves one message from `from` to `to`. A close is forwarded with its code and ends
/// the session; an oversized message closes both sides with 1009.
async fn forward(
    message: Option<Result<Message, WsError>>,
    to: &mut Socket,
    from: &mut Socket,
    bytes: &mut u64,
    messages: &mut u64,
    side: &'static str,
) -> Step {
    match message {
        Some(Ok(Message::Close(frame))) => {
            let code = frame.as_ref().map(|f| u16::from(f.code));
            let _ = to.send(Message::Close(frame)).await;
            let _ = to.close(None).await;
            // Reading the close made tungstenite queue its echo; flush it to the sender.
            let _ = from.flush().await;
            Step::End(
                if side == "client" {
                    "client_closed"
                } else {
                    "upstream_closed"
                },
                code,
            )
        }
        Some(Ok(Message::Frame(_))) => Step::Continue,
        Some(Ok(message)) => {
            *bytes += message.len() as u64;
            *messages += 1;
            match to.send(message).await {
                Ok(()) => Step::Continue,
                Err(_) => {
                    close(from, 1011, "peer unavailable").await;
                    Step::End(
                        if side == "client" {
                            "upstream_error"
                        } else {
                            "client_error"
                        },
                        Some(1011),
                    )
                }
            }
        }
        Some(Err(WsError::Capacity(_))) => {
            close(from, 1009, "message too big").await;
            close(to, 1009, "message too big").await;
            Step::End("message_too_big", Some(1009))
        }
        Some(Err(_)) | None => {
            close(to, 1001, "peer went away").await;
            Step::End(
                if side == "client" {
                    "client_gone"
                } else {
                    "upstream_gone"
                },
                None,
            )
        }
    }
}

/// Sends a close frame and flushes, bounded: a peer that stopped reading cannot hold us.
pub async fn close(socket: &mut Socket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(Some(frame))).await;
}
