//! A token offered as a WebSocket subprotocol, `Sec-WebSocket-Protocol: bearer.<token>, chat`
//! (what browsers can send, since they cannot set `Authorization`). Only the real
//! subprotocols go upstream and only the upstream's choice is echoed back.
//!
//! The prefix is matched ignoring ASCII case, like the `Bearer` scheme: what is read as a
//! token here is exactly what [`is_token_protocol`] keeps from the upstream.

use http::header::SEC_WEBSOCKET_PROTOCOL;
use http::HeaderMap;

const PREFIX: &str = "bearer.";

/// The token of a `bearer.<token>` subprotocol, in any case of the prefix.
fn token_of(protocol: &str) -> Option<&str> {
    let head = protocol.get(..PREFIX.len())?;
    head.eq_ignore_ascii_case(PREFIX)
        .then(|| &protocol[PREFIX.len()..])
}

/// Whether an offered subprotocol (trimmed) carries a token and must not go upstream.
pub fn is_token_protocol(protocol: &str) -> bool {
    token_of(protocol).is_some()
}

pub(super) fn find(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| token_of(p.trim()).map(String::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_matched_in_any_case() {
        assert_eq!(token_of("bearer.a.b.c"), Some("a.b.c"));
        assert_eq!(token_of("BEARER.x"), Some("x"));
        assert_eq!(token_of("Bearer."), Some(""));
        assert_eq!(token_of("bearer"), None);
        assert_eq!(token_of("chat.bearer.x"), None);
        assert_eq!(token_of("bearé.x"), None);
        assert!(is_token_protocol("bEaReR.x"));
        assert!(!is_token_protocol("chat"));
    }
}
