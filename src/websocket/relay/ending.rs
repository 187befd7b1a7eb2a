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
    use Farewell::{Close, Echo, Forward, Nothing};
    let both = |code, text, reason| Plan {
        client: Close(code, text),
        upstream: Close(code, text),
        reason,
        code: Some(code),
    };
    let one = |client, upstream, reason, code| Plan {
        client,
        upstream,
        reason,
        code,
    };
    match ending {
        Ending::Closed(side, frame) => {
            let code = frame.as_ref().map(|f| u16::from(f.code));
            match side {
                Side::Client => one(Echo, Forward(for_upstream(frame)), "client_closed", code),
                Side::Upstream => one(Forward(frame), Echo, "upstream_closed", code),
            }
        }
        Ending::Gone(Side::Client) => {
            one(Nothing, Close(1001, "peer went away"), "client_gone", None)
        }
        Ending::Gone(Side::Upstream) => one(
            Close(1001, "peer went away"),
            Nothing,
            "upstream_gone",
            None,
        ),
        Ending::Unwritable(Side::Upstream) => one(
            Close(1011, "peer unavailable"),
            Nothing,
            "upstream_error",
            Some(1011),
        ),
        Ending::Unwritable(Side::Client) => one(
            Nothing,
            Close(1011, "peer unavailable"),
            "client_error",
            Some(1011),
        ),
        Ending::Stalled(Side::Upstream) => one(
            Close(1011, "peer not reading"),
            Nothing,
            "upstream_stalled",
            Some(1011),
        ),
        Ending::Stalled(Side::Client) => one(
            Nothing,
            Close(1011, "peer not reading"),
            "client_stalled",
            Some(1011),
        ),
        Ending::TooBig => both(1009, "message too big", "message_too_big"),
        Ending::Expired => both(CLOSE_UNAUTHORIZED, "token expired", "token_expired"),
        Ending::Revoked => both(CLOSE_UNAUTHORIZED, "token revoked", "token_revoked"),
        Ending::Idle => both(1001, "idle timeout", "idle_timeout"),
        Ending::Lifetime => both(1001, "session lifetime reached", "max_lifetime"),
        Ending::Drain => both(1001, "going away", "shutdown"),
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
