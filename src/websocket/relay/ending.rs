//! How a session ends: what ended it ([`Ending`]) and what each side is told then
//! ([`plan`]), as one table. See the state machine in the parent module.

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::{Side, CLOSE_REWRITTEN, CLOSE_UNAUTHORIZED, RESERVED_CLOSE_CODES};

/// Why the session ends.
#[derive(Debug, PartialEq)]
pub(super) enum Ending {
    /// That side sent a close frame.
    Closed(Side, Option<CloseFrame>),
    /// That side's stream ended or broke.
    Gone(Side),
    /// A send to that side failed.
    Unwritable(Side),
    /// A send to that side was pending for idle_timeout: it stopped reading.
    Stalled(Side),
    TooBig,
    Expired,
    Revoked,
    /// The key that verified the token is no longer published.
    KeyWithdrawn,
    Idle,
    Lifetime,
    Drain,
}

/// What one side is sent as the session ends.
#[derive(Debug, PartialEq)]
pub(super) enum Farewell {
    Close(u16, &'static str),
    /// The other side's close frame, passed on.
    Forward(Option<CloseFrame>),
    /// This side closed: flush the echo tungstenite queued when it read the close.
    Echo,
    Nothing,
}

#[derive(Debug, PartialEq)]
pub(super) struct Plan {
    pub(super) client: Farewell,
    pub(super) upstream: Farewell,
    pub(super) reason: &'static str,
    pub(super) code: Option<u16>,
}

pub(super) fn plan(ending: Ending) -> Plan {
    let both = |code, text, reason| Plan {
        client: Farewell::Close(code, text),
        upstream: Farewell::Close(code, text),
        reason,
        code: Some(code),
    };
    let reasons = |client, upstream| Reasons { client, upstream };
    match ending {
        Ending::Closed(side, frame) => closed(side, frame),
        Ending::Gone(side) => {
            let why = reasons("client_gone", "upstream_gone");
            broken(side, (1001, "peer went away"), why, None)
        }
        Ending::Unwritable(side) => {
            let why = reasons("client_error", "upstream_error");
            broken(side, (1011, "peer unavailable"), why, Some(1011))
        }
        Ending::Stalled(side) => {
            let why = reasons("client_stalled", "upstream_stalled");
            broken(side, (1011, "peer not reading"), why, Some(1011))
        }
        Ending::TooBig => both(1009, "message too big", "message_too_big"),
        Ending::Expired => both(CLOSE_UNAUTHORIZED, "token expired", "token_expired"),
        Ending::Revoked => both(CLOSE_UNAUTHORIZED, "token revoked", "token_revoked"),
        Ending::KeyWithdrawn => both(CLOSE_UNAUTHORIZED, "token key withdrawn", "key_withdrawn"),
        Ending::Idle => both(1001, "idle timeout", "idle_timeout"),
        Ending::Lifetime => both(1001, "session lifetime reached", "max_lifetime"),
        Ending::Drain => both(1001, "going away", "shutdown"),
    }
}

/// The reason logged when the client broke off, and when the upstream did.
struct Reasons {
    client: &'static str,
    upstream: &'static str,
}

/// A side closed: its close is echoed to it and passed on to the other.
fn closed(side: Side, frame: Option<CloseFrame>) -> Plan {
    let code = frame.as_ref().map(|f| u16::from(f.code));
    match side {
        Side::Client => Plan {
            client: Farewell::Echo,
            upstream: Farewell::Forward(for_upstream(frame)),
            reason: "client_closed",
            code,
        },
        Side::Upstream => Plan {
            client: Farewell::Forward(frame),
            upstream: Farewell::Echo,
            reason: "upstream_closed",
            code,
        },
    }
}

/// A side broke off without a close: nothing more goes to it, and the other side gets
/// `close`.
fn broken(side: Side, close: (u16, &'static str), why: Reasons, code: Option<u16>) -> Plan {
    let (code_close, text) = close;
    match side {
        Side::Client => Plan {
            client: Farewell::Nothing,
            upstream: Farewell::Close(code_close, text),
            reason: why.client,
            code,
        },
        Side::Upstream => Plan {
            client: Farewell::Close(code_close, text),
            upstream: Farewell::Nothing,
            reason: why.upstream,
            code,
        },
    }
}

/// A client's close as the upstream gets it: never in gatehouse's own range.
fn for_upstream(frame: Option<CloseFrame>) -> Option<CloseFrame> {
    match frame {
        Some(f) if RESERVED_CLOSE_CODES.contains(&u16::from(f.code)) => Some(CloseFrame {
            code: CloseCode::from(CLOSE_REWRITTEN),
            reason: "".into(),
        }),
        other => other,
    }
}
