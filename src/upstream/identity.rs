//! Identity headers: the configured header names are removed from every client request in
//! every spelling a backend reads as the same name (any case, `_` for `-`; that is
//! `headers::strip_client`), then set here from the verified identity, so a client can
//! never hand the upstream an `X-Auth-Subject` of its choosing. The upstream rewrite calls
//! [`attach`] last.

use std::sync::{Arc, Mutex, PoisonError};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::auth::claims::Claims;
use crate::auth::policy::Access;
use crate::claim_path::ClaimPath;
use crate::upstream::strip_rules::StripRules;

/// A generation's `[identity] headers`, with whether each carries a scope claim (read
/// upstream as scopes): worked out once per config, not per request.
#[derive(Debug)]
pub struct IdentityHeaders {
    names: Vec<(HeaderName, ClaimPath)>,
    scopes: Vec<bool>,
    /// `[identity] strip_headers`, removed from the client's request with the names.
    strip: StripRules,
}

impl IdentityHeaders {
    pub fn new(config: &crate::Config) -> Self {
        let names = config.identity_headers.clone();
        let scopes = names
            .iter()
            .map(|(_, claim)| config.claims.scopes.contains(claim))
            .collect();
        Self {
            names,
            scopes,
            strip: config.strip_headers.clone(),
        }
    }

    /// The header names and the claims they carry.
    pub fn names(&self) -> &[(HeaderName, ClaimPath)] {
        &self.names
    }

    /// The operator's own rules for client headers to remove.
    pub fn strip_rules(&self) -> &StripRules {
        &self.strip
    }

    /// The headers `claims` gives values for, in order.
    fn values(&self, claims: &Claims) -> Vec<(HeaderName, HeaderValue)> {
        let mut values = Vec::with_capacity(self.names.len());
        for (index, (name, claim)) in self.names.iter().enumerate() {
            let shape = match self.scopes.get(index) {
                Some(true) => Shape::Scopes,
                _ => Shape::List,
            };
            let value = claim.resolve(claims);
            if let Some(value) = value.and_then(|v| header_value(v, shape)) {
                values.push((name.clone(), value));
            }
        }
        values
    }
}

/// Sets the identity headers the verified identity has claims for. Every client spelling
/// of them is already gone: `headers::strip_client` removes them with the other spoofed
/// names. A header whose `scopes` entry is set carries a scope claim, which the upstream
/// reads as scopes, split on spaces too. `remembered` is the connection's: its last
/// values are set again while the claims and the headers are the very same.
pub fn attach(
    headers: &mut HeaderMap,
    identity: &Arc<IdentityHeaders>,
    access: &Access,
    remembered: &Remembered,
) {
    let Some(verified) = access.identity() else {
        return;
    };
    remembered.with_values(identity, verified.shared(), |values| {
        for (name, value) in values {
            headers.insert(name.clone(), value.clone());
        }
    });
}

/// The identity header values of a connection's last authenticated request. A client's
/// repeat requests carry the same token, whose claims the token cache hands out as one
/// shared `Claims`: rendering them again cost a string copy, a header value built and
/// checked, and both freed, on every request.
#[derive(Debug, Default)]
pub struct Remembered(Mutex<Option<Last>>);

#[derive(Debug)]
struct Last {
    /// Both held, not only compared: while they are held, neither allocation can be
    /// reused for another caller's claims or another generation's headers, so equal
    /// pointers mean the very same claims and headers.
    claims: Arc<Claims>,
    identity: Arc<IdentityHeaders>,
    values: Vec<(HeaderName, HeaderValue)>,
}

impl Remembered {
    fn with_values(
        &self,
        identity: &Arc<IdentityHeaders>,
        claims: &Arc<Claims>,
        f: impl FnOnce(&[(HeaderName, HeaderValue)]),
    ) {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let same = |last: &Last| {
            Arc::ptr_eq(&last.claims, claims) && Arc::ptr_eq(&last.identity, identity)
        };
        match last.as_ref().filter(|l| same(l)) {
            Some(last) => f(&last.values),
            None => f(&last.insert(Last::of(identity, claims)).values),
        }
    }
}

impl Last {
    /// Once per connection and token, nearly always: out of line, as `forwarded`'s.
    #[cold]
    fn of(identity: &Arc<IdentityHeaders>, claims: &Arc<Claims>) -> Self {
        Self {
            values: identity.values(claims),
            claims: claims.clone(),
            identity: identity.clone(),
        }
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
        let identity = Arc::new(IdentityHeaders {
            names: mapping,
            scopes: vec![],
            strip: StripRules::default(),
        });
        attach(
            &mut h,
            &identity,
            &Access::Anonymous,
            &Remembered::default(),
        );
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-other"));
    }

    fn headers(names: &[(&'static str, &str)]) -> Arc<IdentityHeaders> {
        let names: Vec<_> = names
            .iter()
            .map(|(h, c)| (HeaderName::from_static(h), ClaimPath::top(c)))
            .collect();
        let scopes = names
            .iter()
            .map(|(_, c)| *c == ClaimPath::top("scope"))
            .collect();
        Arc::new(IdentityHeaders {
            names,
            scopes,
            strip: StripRules::default(),
        })
    }

    fn caller(claims: Value) -> Arc<Claims> {
        Arc::new(claims.as_object().unwrap().clone())
    }

    /// The access `authorize` grants `claims` on a route that only requires a token.
    fn access(claims: &Arc<Claims>) -> Access {
        let raw = crate::config::load_str(
            "[[route]]\npath = \"/\"\nupstream = \"http://u\"\nauth = \"required\"\n",
        )
        .unwrap();
        let route = crate::config::validate::validate_route_for_tests(&raw.routes[0]);
        let names = crate::config::IdentityClaims {
            subject: ClaimPath::top("sub"),
            role: ClaimPath::top("role"),
            scopes: vec![ClaimPath::top("scope")],
        };
        let permitted = crate::auth::policy::authorize(&route, &names, Some(claims.clone()), ());
        permitted.unwrap().into_parts().1
    }

    fn sent(identity: &Arc<IdentityHeaders>, access: &Access, memo: &Remembered) -> HeaderMap {
        let mut h = HeaderMap::new();
        attach(&mut h, identity, access, memo);
        h
    }

    /// A connection's next request with the same claims under the same headers gets the
    /// same values; other claims (equal or not) or another generation's headers get their
    /// own, and an anonymous request none.
    #[test]
    fn remembered_values_serve_only_the_same_claims_and_headers() {
        let memo = Remembered::default();
        let subject = headers(&[("x-auth-subject", "sub"), ("x-auth-scopes", "scope")]);
        let ann = caller(json!({"sub": "ann", "scope": "read write"}));
        let first = sent(&subject, &access(&ann), &memo);
        assert_eq!(first["x-auth-subject"], "ann");
        assert_eq!(first["x-auth-scopes"], "read write");
        let again = sent(&subject, &access(&ann), &memo);
        assert_eq!(again, first);
        let bytes = |h: &HeaderMap| h["x-auth-subject"].as_bytes().as_ptr();
        assert_eq!(bytes(&again), bytes(&first), "used again, not built again");

        let bob = caller(json!({"sub": "bob"}));
        let other = sent(&subject, &access(&bob), &memo);
        assert_eq!(other["x-auth-subject"], "bob");
        assert!(other.get("x-auth-scopes").is_none());

        let ann_again = caller(json!({"sub": "ann", "scope": "read write"}));
        let equal = sent(&subject, &access(&ann_again), &memo);
        assert_eq!(equal, first);
        assert_ne!(
            bytes(&equal),
            bytes(&first),
            "other claims are rendered anew"
        );

        let reloaded = headers(&[("x-user", "sub")]);
        let after_reload = sent(&reloaded, &access(&ann_again), &memo);
        assert_eq!(after_reload.len(), 1);
        assert_eq!(after_reload["x-user"], "ann");

        assert!(sent(&reloaded, &Access::Anonymous, &memo).is_empty());
        assert_eq!(sent(&reloaded, &access(&ann_again), &memo), after_reload);
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
