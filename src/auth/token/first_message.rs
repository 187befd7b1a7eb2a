//! The first-message source: after the handshake the client's first frame must be the
//! text `{"type":"auth","token":"..."}`. Anything else (binary, other JSON, extra fields
//! are fine) is not an auth message.

use serde::Deserialize;

#[derive(Deserialize)]
struct AuthMessage {
    #[serde(rename = "type")]
    kind: String,
    token: String,
}

/// The token of an auth message, or `None` when the text is not one.
pub fn parse(text: &str) -> Option<String> {
    let message: AuthMessage = serde_json::from_str(text).ok()?;
    (message.kind == "auth").then_some(message.token)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn only_auth_messages_carry_a_token() {
        assert_eq!(
            parse(r#"{"type":"auth","token":"a.b.c"}"#).as_deref(),
            Some("a.b.c")
        );
        assert_eq!(
            parse(r#"{"token":"a.b.c","type":"auth","v":1}"#).as_deref(),
            Some("a.b.c")
        );
        assert_eq!(parse(r#"{"type":"hello","token":"a.b.c"}"#), None);
        assert_eq!(parse(r#"{"type":"auth"}"#), None);
        assert_eq!(parse("a.b.c"), None);
        assert_eq!(parse(r#"{"type":"auth","token":7}"#), None);
    }
}
