//! Identity headers: the configured header names are removed from every client request in
//! every spelling a backend reads as the same name (any case, `_` for `-`; that is
//! `headers::strip_client`), then set here from the verified identity, so a client can
//! never hand the upstream an `X-Auth-Subject` of its choosing. The upstream rewrite calls
//! [`attach`] last.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::auth::policy::Access;
use crate::claim_path::ClaimPath;

/// For each `[identity]` header, whether it carries a scope claim: worked out once per
/// config, for [`attach`].
pub fn scope_flags(config: &crate::Config) -> Vec<bool> {
    config
        .identity_headers
        .iter()
        .map(|(_, claim)| config.claims.scopes.contains(claim))
        .collect()
}

/// Sets the identity headers the verified identity has claims for. Every client spelling
/// of them is already gone: `headers::strip_client` removes them with the other spoofed
/// names. A header whose `scopes` entry is set carries a scope claim, which the upstream
/// reads as scopes, split on spaces too.
pub fn attach(
    headers: &mut HeaderMap,
    mapping: &[(HeaderName, ClaimPath)],
    scopes: &[bool],
    access: &Access,
) {
    let Some(identity) = access.identity() else {
        return;
    };
    for (index, (name, claim)) in mapping.iter().enumerate() {
        let shape = match scopes.get(index) {
            Some(true) => Shape::Scopes,
            _ => Shape::List,
        };
        let value = claim.resolve(identity.claims());
        let Some(value) = value.and_then(|v| header_value(v, shape)) else {
            continue;
        };
        headers.insert(name.clone(), value);
    }
}

/// How an upstream splits the header: every identity header may be read as a `,` list;
/// a scope header also on spaces (RFC 6749 §3.3 scope tokens hold none).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    List,
    Scopes,
}

/// The claim as one field value the upstream reads back as exactly that claim, or `None`
/// (the header is then left out). Strings go as they are and booleans as written; integers
/// as written (a fraction, an exponent or a value past 64 bits would reach the upstream
/// reformatted, so those are left out); arrays as their items joined with `,`.
///
/// HTTP trims whitespace around a field value, and list-reading upstreams split on `,` and
/// trim each item. So a string or item with whitespace at either end or holding a `,`, an
/// empty item, an item that is not a string or integer, and (in a scope header) an item
/// holding a space would be read as another identity than the one gatehouse checked: a
/// token whose `role` is `" admin"`, `"user,admin"` or `["x,admin"]` fails
/// `require.roles = ["admin"]` here, and must not read as `admin` upstream on a route
/// without that rule.
fn header_value(value: &Value, shape: Shape) -> Option<HeaderValue> {
    let text = match value {
        Value::String(s) if plain(s) => s.clone(),
        Value::Array(items) => {
            let mut joined = String::new();
            for item in items {
                let text = match item {
                    Value::String(s)
                        if !s.is_empty()
                            && plain(s)
                            && (shape == Shape::List || !s.contains([' ', '\t'])) =>
                    {
                        s.clone()
                    }
                    Value::Number(n) => integer(n)?,
                    _ => return None,
                };
                if !joined.is_empty() {
                    joined.push(',');
                }
                joined.push_str(&text);
            }
            joined
        }
        Value::Number(n) => integer(n)?,
        Value::Bool(b) => b.to_string(),
        Value::String(_) | Value::Null | Value::Object(_) => return None,
    };
    HeaderValue::from_str(&text).ok()
}

/// No `,` (the list separator) and no whitespace at either end, which a field value would
/// lose on the way.
fn plain(s: &str) -> bool {
    !s.contains(',') && trimmed(s)
}

/// No whitespace at either end, which a field value would lose on the way; Unicode
/// whitespace too (`U+00A0`), which Go's `strings.TrimSpace`, .NET's `Trim()` and
/// JavaScript's `trim()` drop when an upstream tidies the value.
fn trimmed(s: &str) -> bool {
    s.trim().len() == s.len()
}

/// An integer as written; JSON allows no other spelling of one that fits 64 bits.
fn integer(n: &serde_json::Number) -> Option<String> {
    (n.is_i64() || n.is_u64()).then(|| n.to_string())
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
        crate::upstream::headers::strip_client(&mut h, &mapping, false);
        attach(&mut h, &mapping, &[], &Access::Anonymous);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-other"));
    }

    fn hv(value: &Value) -> Option<HeaderValue> {
        header_value(value, Shape::List)
    }

    #[test]
    fn values_render_and_unsafe_ones_are_dropped() {
        assert_eq!(hv(&json!("alice")).unwrap(), "alice");
        assert_eq!(hv(&json!(["a", "b", 3])).unwrap(), "a,b,3");
        assert_eq!(hv(&json!(42)).unwrap(), "42");
        assert!(hv(&json!("evil\r\nX-Admin: 1")).is_none());
        assert!(hv(&json!({"a": 1})).is_none());
    }

    #[test]
    fn a_value_the_upstream_would_read_differently_is_left_out() {
        assert_eq!(hv(&json!("Doe John")).unwrap(), "Doe John");
        assert_eq!(
            hv(&json!(["Domain Admins", "x"])).unwrap(),
            "Domain Admins,x"
        );
        let scopes = |v: Value| header_value(&v, Shape::Scopes);
        assert_eq!(scopes(json!("chat read")).unwrap(), "chat read");
        assert_eq!(scopes(json!(["chat", "read"])).unwrap(), "chat,read");
        assert!(scopes(json!(["x read"])).is_none());
        assert_eq!(hv(&json!(-7)).unwrap(), "-7");
        assert_eq!(hv(&json!(true)).unwrap(), "true");
        assert_eq!(hv(&json!([])).unwrap(), "");
        assert_eq!(hv(&json!(u64::MAX)).unwrap(), u64::MAX.to_string());
        for bad in [
            json!(" victim"),
            json!("user,admin"),
            json!("\u{a0}admin"),
            json!(["user", "admin\u{2003}"]),
            json!("victim\t"),
            json!(["user", " admin"]),
            json!(["user", "x,admin"]),
            json!(["user", ""]),
            json!(["user", null]),
            json!(["user", true]),
            json!(["user", ["admin"]]),
            json!(["user", 1.5]),
            json!(1e2),
            json!(100.0),
            json!(-0.0),
            serde_json::from_str::<Value>("18446744073709551616").unwrap(),
        ] {
            assert!(hv(&bad).is_none(), "{bad}");
        }
    }
}
