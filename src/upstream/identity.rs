//! Identity headers: the configured header names are removed from every client request in
//! every spelling a backend reads as the same name (any case, `_` for `-`; that is
//! `headers::strip_client`), then set here from the verified identity, so a client can
//! never hand the upstream an `X-Auth-Subject` of its choosing. The upstream rewrite calls
//! [`attach`] last.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::auth::policy::Access;
use crate::claim_path::ClaimPath;

/// Sets the identity headers the verified identity has claims for. Every client spelling
/// of them is already gone: `headers::strip_client` removes them with the other spoofed
/// names.
pub fn attach(headers: &mut HeaderMap, mapping: &[(HeaderName, ClaimPath)], access: &Access) {
    let Some(identity) = access.identity() else {
        return;
    };
    for (name, claim) in mapping {
        let Some(value) = claim.resolve(identity.claims()).and_then(header_value) else {
            continue;
        };
        headers.insert(name.clone(), value);
    }
}

/// Strings as they are, arrays joined with `,`, numbers and booleans as written.
/// A value with bytes not allowed in a header (CR, LF, NUL...) is left out, not forwarded.
fn header_value(value: &Value) -> Option<HeaderValue> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null | Value::Object(_) => return None,
    };
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_spelling_is_replaced_by_the_verified_value() {
        let mapping = vec![(
            HeaderName::from_static("x-auth-subject"),
            ClaimPath::top("sub"),
        )];
        let mut h = HeaderMap::new();
        for name in ["x_auth_subject", "X-AUTH_SUBJECT", "x-auth-subject"] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("root"),
            );
        }
        h.insert("x-other", HeaderValue::from_static("1"));
        crate::upstream::headers::strip_client(&mut h, &mapping);
        attach(&mut h, &mapping, &Access::Anonymous);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-other"));
    }

    #[test]
    fn values_render_and_unsafe_ones_are_dropped() {
        assert_eq!(header_value(&json!("alice")).unwrap(), "alice");
        assert_eq!(header_value(&json!(["a", "b", 3])).unwrap(), "a,b,3");
        assert_eq!(header_value(&json!(42)).unwrap(), "42");
        assert!(header_value(&json!("evil\r\nX-Admin: 1")).is_none());
        assert!(header_value(&json!({"a": 1})).is_none());
    }
}
