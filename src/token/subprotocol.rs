//! A token offered as a WebSocket subprotocol, `Sec-WebSocket-Protocol: bearer.<token>, chat`
//! (what browsers can send, since they cannot set `Authorization`). Only the real
//! subprotocols go upstream and only the upstream's choice is echoed back.

use http::header::SEC_WEBSOCKET_PROTOCOL;
use http::HeaderMap;

pub const PREFIX: &str = "bearer.";

pub(super) fn find(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(PREFIX).map(String::from))
}
