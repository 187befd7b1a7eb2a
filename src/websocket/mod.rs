//! WebSocket upgrades: recognising one, the `Origin` check, the handshake headers that go
//! upstream, and the session that relays frames once both sides have switched protocols.
//!
//! An upgrade is authenticated like any request before anything reaches the upstream;
//! then the upstream's own handshake answer (its `101` with `Sec-WebSocket-Accept` and the
//! chosen subprotocol) goes back to the client, and [`relay`] takes over both sockets.
//! With the `first-message` source, `upgrade.rs` answers the handshake itself and opens
//! the upstream leg only once the first message carried a valid token; until then the
//! client socket is [`metered`] against the pre-authentication budget. The upstream's chosen
//! subprotocol must be one the client offered ([`chosen_protocol_offered`]); on a
//! first-message route, exactly the one gatehouse already answered ([`chosen_protocol_is`]).

pub mod frame;
pub(crate) mod read_text;
pub(crate) mod relay;
pub mod scan;
pub mod scan_check;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Version};

static SEC_WEBSOCKET_PROTOCOL: header::HeaderName = header::SEC_WEBSOCKET_PROTOCOL;

/// An HTTP/1.1 `GET` asking to switch to `websocket` (RFC 6455 §4.1).
pub fn is_upgrade_request<B>(request: &http::Request<B>) -> bool {
    request.method() == Method::GET
        && request.version() == Version::HTTP_11
        && has_token(request.headers(), &header::CONNECTION, "upgrade")
        && has_token(request.headers(), &header::UPGRADE, "websocket")
}

fn has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether the handshake carries one `Sec-WebSocket-Key` that is the base64 of 16 bytes
/// (RFC 6455 §4.1). An upstream that would take any value, or several, must not decide for
/// gatehouse what a handshake is; and on a first-message route gatehouse answers it itself.
pub fn key_valid(headers: &HeaderMap) -> bool {
    use base64::Engine;
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return false;
    };
    let mut nonce = [0u8; 16];
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode_slice(key.as_bytes(), &mut nonce)
            .is_ok_and(|n| n == 16)
}

/// Whether the handshake asks for RFC 6455's version, `13`, in one field: the only version
/// gatehouse relays and answers.
pub fn version_supported(headers: &HeaderMap) -> bool {
    let mut versions = headers.get_all(header::SEC_WEBSOCKET_VERSION).iter();
    matches!((versions.next(), versions.next()), (Some(v), None) if v == "13")
}

/// Cross-site WebSocket hijacking guard: a browser always sends `Origin`, and when the route
/// lists origins it must be one of them. No `Origin` means a non-browser client.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    if allowed.is_empty() || allowed.iter().any(|a| a == "*") {
        return true;
    }
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => crate::config::origin_listed(allowed, origin),
    }
}

/// The subprotocols a client offered, without any `bearer.<token>` entry (any case).
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(&SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !crate::auth::token::is_token_protocol(p))
        .map(String::from)
        .collect()
}

/// Removes every `bearer.<token>` subprotocol from a request going upstream, upgrade or
/// not: a token offered that way must never reach the upstream. The rewrite calls it only
/// for a request that offers one (`headers::strip_client` says which do).
pub fn remove_token_protocols(headers: &mut HeaderMap) {
    let offered = offered_protocols(headers);
    let had_token = headers.get_all(&SEC_WEBSOCKET_PROTOCOL).iter().any(|v| {
        v.as_bytes()
            .windows(7)
            .any(|w| w.eq_ignore_ascii_case(b"bearer."))
    });
    let unreadable = headers
        .get_all(&SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .any(|v| v.to_str().is_err());
    if !had_token && !unreadable {
        return;
    }
    headers.remove(&SEC_WEBSOCKET_PROTOCOL);
    if let Ok(value) = HeaderValue::from_str(&offered.join(", ")) {
        if !offered.is_empty() {
            headers.insert(&SEC_WEBSOCKET_PROTOCOL, value);
        }
    }
}

/// Shapes the upgrade request for the upstream after the hop-by-hop headers were removed:
/// restores `Connection`/`Upgrade`, keeps only the real subprotocols (never a token), and
/// drops extensions, since frames are relayed one by one and compression is not relayed.
pub fn prepare_upstream_request(headers: &mut HeaderMap, protocols: &[String]) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
    headers.remove(&SEC_WEBSOCKET_PROTOCOL);
    if !protocols.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&protocols.join(", ")) {
            headers.insert(&SEC_WEBSOCKET_PROTOCOL, value);
        }
    }
}

/// Whether the upstream's `101` chose a subprotocol the client offered (or none). Exactly
/// one value, byte for byte (RFC 6455 §4.1): anything else would tell the client it speaks
/// a protocol it never asked for, or echo back a value gatehouse removed.
pub fn chosen_protocol_offered(response: &HeaderMap, offered: &[String]) -> bool {
    let mut chosen = response.get_all(&SEC_WEBSOCKET_PROTOCOL).iter();
    match (chosen.next(), chosen.next()) {
        (None, _) => true,
        (Some(one), None) => offered.iter().any(|o| o.as_bytes() == one.as_bytes()),
        (Some(_), Some(_)) => false,
    }
}

/// Whether the upstream's `101` chose exactly `answered` (no subprotocol for `None`): on a
/// first-message route the client got its `101` before the upstream was asked, so the
/// upstream must speak what the client was told, and not choosing is a mismatch too.
pub fn chosen_protocol_is(response: &HeaderMap, answered: Option<&str>) -> bool {
    let mut chosen = response.get_all(&SEC_WEBSOCKET_PROTOCOL).iter();
    match (chosen.next(), chosen.next(), answered) {
        (None, _, None) => true,
        (Some(one), None, Some(answered)) => one.as_bytes() == answered.as_bytes(),
        _ => false,
    }
}

/// The upstream's `101` as the client should see it: the switch itself, its accept key
/// and subprotocol, and nothing that negotiates an extension we do not relay.
pub fn prepare_client_response(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> http::Request<()> {
        let mut b = http::Request::get("/hub");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn upgrades_are_recognised_by_connection_and_upgrade_tokens() {
        assert!(is_upgrade_request(&parts(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket")
        ])));
        assert!(!is_upgrade_request(&parts(&[("upgrade", "websocket")])));
        assert!(!is_upgrade_request(&parts(&[
            ("connection", "upgrade"),
            ("upgrade", "h2c")
        ])));
    }

    /// One `name` field per value.
    fn fields(name: &header::HeaderName, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_version_13_is_spoken() {
        let with = |versions: &[&str]| {
            version_supported(&fields(&header::SEC_WEBSOCKET_VERSION, versions))
        };
        assert!(with(&["13"]));
        for bad in [
            &[][..],
            &["8"],
            &["13, 8"],
            &["13", "13"],
            &[" 13"],
            &["130"],
        ] {
            assert!(!with(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_key_is_one_base64_nonce_of_16_bytes() {
        let with = |keys: &[&str]| key_valid(&fields(&header::SEC_WEBSOCKET_KEY, keys));
        assert!(with(&["dGhlIHNhbXBsZSBub25jZQ=="]));
        for bad in [
            &[][..],
            &["abc"],
            &["!!!!notbase64!!!!"],
            &["dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ=="],
            &["dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ=="],
            &["dGhlIHNhbXBsZSBub25jZQ"],
            &["dGhlIHNhbXBsZSBub25jZXg="],
            &[" dGhlIHNhbXBsZSBub25jZQ=="],
        ] {
            assert!(!with(bad), "{bad:?}");
        }
    }

    #[test]
    fn origins_are_checked_only_when_listed() {
        let allowed = vec!["https://app.example.com".to_string()];
        let with = |o: &str| parts(&[("origin", o)]).headers().clone();
        assert!(origin_allowed(&with("https://app.example.com"), &allowed));
        assert!(!origin_allowed(&with("https://evil.example"), &allowed));
        assert!(origin_allowed(parts(&[]).headers(), &allowed));
        assert!(origin_allowed(&with("https://evil.example"), &[]));
    }

    #[test]
    fn bearer_subprotocols_never_go_upstream() {
        let p = parts(&[
            (
                "sec-websocket-protocol",
                "bearer.abc.def.ghi, chat.v1, BEARER.x",
            ),
            ("sec-websocket-protocol", "Bearer.y"),
            ("sec-websocket-extensions", "permessage-deflate"),
        ]);
        let offered = offered_protocols(p.headers());
        assert_eq!(offered, ["chat.v1"]);
        let mut h = p.headers().clone();
        prepare_upstream_request(&mut h, &offered);
        assert_eq!(h["sec-websocket-protocol"], "chat.v1");
        assert!(h.get("sec-websocket-extensions").is_none());
    }

    #[test]
    fn the_upstream_may_only_choose_an_offered_subprotocol() {
        let offered = vec!["chat.v1".to_string(), "chat.v2".to_string()];
        let answer = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(&SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        assert!(chosen_protocol_offered(&answer(&[]), &offered));
        assert!(chosen_protocol_offered(&answer(&["chat.v2"]), &offered));
        assert!(!chosen_protocol_offered(&answer(&["evil"]), &offered));
        assert!(!chosen_protocol_offered(&answer(&["CHAT.V1"]), &offered));
        assert!(!chosen_protocol_offered(
            &answer(&["chat.v1, chat.v2"]),
            &offered
        ));
        assert!(!chosen_protocol_offered(
            &answer(&["chat.v1", "chat.v1"]),
            &offered
        ));
        assert!(!chosen_protocol_offered(&answer(&["bearer.abc"]), &[]));
        assert!(chosen_protocol_is(&answer(&["chat.v2"]), Some("chat.v2")));
        assert!(chosen_protocol_is(&answer(&[]), None));
        for (chosen, answered) in [
            (&[][..], Some("chat.v2")),
            (&["chat.v1"][..], Some("chat.v2")),
            (&["chat.v2", "chat.v2"][..], Some("chat.v2")),
            (&["chat.v2"][..], None),
        ] {
            assert!(!chosen_protocol_is(&answer(chosen), answered), "{chosen:?}");
        }
    }
}
