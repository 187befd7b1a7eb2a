//! The WebSocket first-message parser, `gatehouse::auth::token::first_message::parse`, followed by
//! `token::accept` as `upgrade.rs` runs them on the client's first text frame.
//!
//! Checked beyond "no panic": a token is returned only for a JSON object whose `type` is
//! the string `auth` and whose `token` is the string returned.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // A text frame is UTF-8 (tungstenite refuses anything else before we see it).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(token) = gatehouse::auth::token::first_message::parse(text) else {
        return;
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        // serde_json skips ignored fields without range-checking numbers or pairing UTF-16
        // surrogate escapes, so `{"type":"auth","token":"t","x":1e999}` and
        // `{"type":"auth","token":"t","\ud800":1}` are auth messages but not `Value`s.
        // Harmless: `type` and `token` themselves are fully checked.
        Err(e)
            if ["number out of range", "hex escape", "surrogate"]
                .iter()
                .any(|m| e.to_string().contains(m)) =>
        {
            return
        }
        Err(e) => panic!("parse found a token in text that is not JSON ({e}): {text:?}"),
    };
    assert_eq!(value.get("type").and_then(Value::as_str), Some("auth"));
    assert_eq!(
        value.get("token").and_then(Value::as_str),
        Some(token.as_str())
    );
    if let Ok(accepted) = gatehouse::auth::token::accept(token.clone(), 4096) {
        assert_eq!(accepted.expose(), token);
    }
});
