//! Claim paths: where in a token's claims a value lives, parsed once when the config loads.
//!
//! Identity providers nest what policies need: Keycloak puts roles in
//! `realm_access.roles` and `resource_access.<client>.roles`, Auth0 names custom claims
//! with URLs (`https://example.com/roles`), whose dots are not separators. A path is
//! names separated by `.`; a name holding `.`, `[`, `]`, `"`, `\` or spaces is written
//! quoted in brackets, JSON-style: `["https://example.com/roles"]`,
//! `resource_access["my.app"].roles`, with `\"` and `\\` as the only escapes.
//!
//! A path walks JSON objects only: it never indexes into an array, so a value means the
//! same thing whatever order the IdP lists things in. A path that does not resolve is
//! simply absent (policy denies, no header is set); nothing here can panic on a token.

use std::fmt;

use serde_json::{Map, Value};

/// The most names a path may have; real IdP claims are two or three deep.
const MAX_DEPTH: usize = 16;

/// A parsed claim path: one or more names, outermost first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimPath {
    names: Box<[Box<str>]>,
}

impl ClaimPath {
    /// The path of one top-level claim, whatever characters its name holds.
    pub fn top(name: &str) -> Self {
        ClaimPath {
            names: vec![Box::from(name)].into(),
        }
    }

    /// The value at this path, if every name along it is a key of a JSON object.
    pub fn resolve<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.names.split_first()?;
        let mut value = claims.get(&**first)?;
        for name in rest {
            value = value.as_object()?.get(&**name)?;
        }
        Some(value)
    }

    /// The value at this path when it is a string (a subject, an email).
    pub fn string<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a str> {
        self.resolve(claims).and_then(Value::as_str)
    }

    /// The single name of a top-level claim, `None` for a nested path.
    pub fn top_level(&self) -> Option<&str> {
        match &*self.names {
            [only] => Some(only),
            _ => None,
        }
    }
}

/// The strings of a role or group list: a string is a list of one, an array gives its
/// string members (anything else in it is ignored), every other value gives nothing.
pub fn strings(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The scopes of a scope claim: RFC 6749 §3.3 space-separated in a string (`scope`,
/// Entra's `scp`), or an array of strings (Okta's `scp`, Auth0's `permissions`).
pub fn scopes(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::String(s)) => s.split(' ').filter(|s| !s.is_empty()).collect(),
        other => strings(other),
    }
}

impl std::str::FromStr for ClaimPath {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut names: Vec<Box<str>> = Vec::new();
        let mut rest = text;
        loop {
            let (name, after) = if rest.starts_with('[') {
                quoted(rest)?
            } else {
                bare(rest, text)?
            };
            names.push(name.into());
            if names.len() > MAX_DEPTH {
                return Err(format!("more than {MAX_DEPTH} names"));
            }
            rest = match after.as_bytes().first() {
                None => break,
                Some(b'.') if after.len() == 1 => return Err("ends with '.'".into()),
                Some(b'.') => &after[1..],
                Some(b'[') => after,
                Some(_) => return Err("expected '.' or '[' after a quoted name".into()),
            };
        }
        Ok(ClaimPath {
            names: names.into(),
        })
    }
}

/// An unquoted name, up to the next `.` or `[`.
fn bare<'a>(rest: &'a str, whole: &str) -> Result<(String, &'a str), String> {
    let end = rest.find(['.', '[']).unwrap_or(rest.len());
    let name = &rest[..end];
    if name.is_empty() {
        return Err("empty name (two dots in a row, or a leading dot)".into());
    }
    if let Some(c) = name.chars().find(|c| needs_quotes(*c)) {
        return Err(format!(
            "{c:?} in a name: quote the name, e.g. [\"{}\"]",
            name.escape_default()
        ));
    }
    if name.contains("://") {
        // An Auth0-style namespaced claim written bare: its dots would split the URL.
        return Err(format!(
            "a claim named by a URL must be quoted, e.g. [\"{}\"]",
            whole.escape_default()
        ));
    }
    Ok((name.to_string(), &rest[end..]))
}

/// A bracketed, quoted name: `["..."]` with `\"` and `\\` as the only escapes.
fn quoted(rest: &str) -> Result<(String, &str), String> {
    let inner = rest
        .strip_prefix("[\"")
        .ok_or("a '[' must be followed by a quoted name: [\"name\"]")?;
    let mut name = String::new();
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let after = inner[i + 1..]
                    .strip_prefix(']')
                    .ok_or("a quoted name must end with \"]")?;
                if name.is_empty() {
                    return Err("empty quoted name".into());
                }
                return Ok((name, after));
            }
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => name.push(e),
                _ => return Err("only \\\" and \\\\ are escapes in a quoted name".into()),
            },
            c if c.is_control() => return Err("a control character in a quoted name".into()),
            c => name.push(c),
        }
    }
    Err("a quoted name is not closed with \"]".into())
}

fn needs_quotes(c: char) -> bool {
    matches!(c, '.' | '[' | ']' | '"' | '\\') || c.is_whitespace() || c.is_control()
}

impl fmt::Display for ClaimPath {
    /// The canonical spelling: bare names where they can be, quoted ones elsewhere.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.names.iter().enumerate() {
            let bare_ok = !name.chars().any(needs_quotes) && !name.contains("://");
            if bare_ok {
                if i > 0 {
                    f.write_str(".")?;
                }
                f.write_str(name)?;
            } else {
                f.write_str("[\"")?;
                for c in name.chars() {
                    if matches!(c, '"' | '\\') {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"]")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(text: &str) -> ClaimPath {
        text.parse().unwrap()
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn dotted_and_quoted_names_resolve_through_objects() {
        let c = claims(json!({
            "sub": "alice",
            "realm_access": {"roles": ["admin", "user"]},
            "resource_access": {"my.app": {"roles": ["editor"]}},
            "https://example.com/roles": ["ops"],
            "a.b": "top-level, dotted",
        }));
        assert_eq!(path("sub").string(&c), Some("alice"));
        assert_eq!(
            strings(path("realm_access.roles").resolve(&c)),
            ["admin", "user"]
        );
        assert_eq!(
            strings(path("resource_access[\"my.app\"].roles").resolve(&c)),
            ["editor"]
        );
        assert_eq!(
            strings(path("resource_access.[\"my.app\"].roles").resolve(&c)),
            ["editor"]
        );
        assert_eq!(
            strings(path("[\"https://example.com/roles\"]").resolve(&c)),
            ["ops"]
        );
        // Dots always separate: the top-level claim "a.b" needs quotes.
        assert_eq!(path("a.b").resolve(&c), None);
        assert_eq!(path("[\"a.b\"]").string(&c), Some("top-level, dotted"));
    }

    #[test]
    fn a_path_that_does_not_resolve_is_absent() {
        let c = claims(json!({"sub": "alice", "list": [{"x": 1}], "n": 3}));
        for missing in [
            "nope",
            "sub.x",
            "list.x",
            "list.0",
            "n.x",
            "realm_access.roles",
        ] {
            assert_eq!(path(missing).resolve(&c), None, "{missing}");
        }
        assert_eq!(path("n").string(&c), None);
    }

    #[test]
    fn malformed_paths_are_refused_with_a_reason() {
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "a b",
            "https://example.com/roles",
            "[\"\"]",
            "[\"open",
            "[\"a\"",
            "[a]",
            "[\"a\"]b",
            "[\"bad \\n escape\"]",
            "a]",
        ] {
            let err = bad.parse::<ClaimPath>().unwrap_err();
            assert!(!err.is_empty(), "{bad:?}");
        }
        let err = "https://example.com/roles"
            .parse::<ClaimPath>()
            .unwrap_err();
        assert!(err.contains("[\"https://example.com/roles\"]"), "{err}");
        let deep = vec!["a"; MAX_DEPTH + 1].join(".");
        assert!(deep.parse::<ClaimPath>().is_err());
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "sub",
            "realm_access.roles",
            "resource_access[\"my.app\"].roles",
            "[\"https://example.com/roles\"]",
            "[\"say \\\"hi\\\"\"]",
        ] {
            let parsed = path(text);
            assert_eq!(parsed.to_string(), text);
            assert_eq!(path(&parsed.to_string()), parsed);
        }
        assert_eq!(path("a").top_level(), Some("a"));
        assert_eq!(path("a.b").top_level(), None);
    }

    #[test]
    fn scopes_split_strings_and_read_arrays() {
        assert_eq!(scopes(Some(&json!("read  write"))), ["read", "write"]);
        assert_eq!(
            scopes(Some(&json!(["read", 3, "write"]))),
            ["read", "write"]
        );
        assert!(scopes(Some(&json!({"read": true}))).is_empty());
        assert!(scopes(None).is_empty());
        assert_eq!(strings(Some(&json!("admin"))), ["admin"]);
        assert_eq!(strings(Some(&json!("a b"))), ["a b"]);
    }
}
