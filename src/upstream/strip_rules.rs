//! `[identity] strip_headers`: client headers the operator's own backends trust, which the
//! built-in list ([`super::headers`]) cannot know (a product's configurable proxy-auth
//! header, an in-house `X-Internal-*` family). They are removed from every request, in
//! every case and `_`/`-` spelling, before gatehouse sets its own headers.

use http::{HeaderMap, HeaderName};

use super::headers::{fold, reserved_names, same_name};

/// The operator's names and prefixes, folded (ASCII lowercase, `_` read as `-`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StripRules {
    names: Vec<String>,
    prefixes: Vec<String>,
}

impl StripRules {
    /// Reads the list: each entry is a header name, or a prefix ending in `*`. A rule that
    /// would remove a field gatehouse needs to frame or route the request (`Host`,
    /// `Content-Length`, `Transfer-Encoding` …) is refused, with its index.
    pub fn parse(list: &[String]) -> Result<Self, (usize, String)> {
        let mut rules = Self::default();
        for (index, entry) in list.iter().enumerate() {
            let (body, prefix) = match entry.strip_suffix('*') {
                Some(body) => (body, true),
                None => (entry.as_str(), false),
            };
            if body.is_empty() {
                return Err((index, "a rule needs a name or a prefix before `*`".into()));
            }
            // `*` is a legal name character, so `*-User` would silently match only a header
            // named that; a wildcard anywhere but the end is refused instead.
            if body.contains('*') {
                return Err((
                    index,
                    format!("{entry:?}: `*` may only end a rule, as a prefix"),
                ));
            }
            if HeaderName::from_bytes(body.as_bytes()).is_err() {
                return Err((index, format!("{entry:?} is not a header name")));
            }
            let folded: String = body.bytes().map(|b| char::from(fold(b))).collect();
            let covers_reserved = reserved_names().any(|name| {
                if prefix {
                    name.starts_with(folded.as_str())
                } else {
                    name == folded
                }
            });
            if covers_reserved {
                return Err((
                    index,
                    format!("{entry:?} would remove a header gatehouse manages"),
                ));
            }
            let list = if prefix {
                &mut rules.prefixes
            } else {
                &mut rules.names
            };
            if !list.contains(&folded) {
                list.push(folded);
            }
        }
        Ok(rules)
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.prefixes.is_empty()
    }

    /// Whether the operator listed this name, or a prefix of it.
    pub fn matches(&self, name: &str) -> bool {
        self.names.iter().any(|n| same_name(n, name))
            || self
                .prefixes
                .iter()
                .any(|p| name.get(..p.len()).is_some_and(|head| same_name(head, p)))
    }

    /// Removes every field the rules match.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if self.is_empty() {
            return;
        }
        let doomed: Vec<_> = headers
            .keys()
            .filter(|name| self.matches(name.as_str()))
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn rules(list: &[&str]) -> Result<StripRules, (usize, String)> {
        StripRules::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn names_and_prefixes_match_in_every_case_and_underscore_spelling() {
        let r = rules(&["X-Proxy-User", "x-internal-*"]).expect("valid rules");
        for name in [
            "x-proxy-user",
            "X_PROXY_USER",
            "x-internal-",
            "X_Internal_Role",
        ] {
            assert!(r.matches(name), "{name}");
        }
        for name in ["x-proxy-users", "x-proxy-use", "x-internal", "accept"] {
            assert!(!r.matches(name), "{name}");
        }
    }

    #[test]
    fn apply_removes_every_matching_field_and_keeps_the_rest() {
        let r = rules(&["X-Proxy-User", "X-Internal-*"]).expect("valid rules");
        let mut h = HeaderMap::new();
        for name in ["x-proxy-user", "x_proxy_user", "x-internal-role", "accept"] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).expect("a valid name"),
                HeaderValue::from_static("v"),
            );
        }
        r.apply(&mut h);
        assert_eq!(h.keys().map(|n| n.as_str()).collect::<Vec<_>>(), ["accept"]);
    }

    #[test]
    fn rules_that_would_remove_what_gatehouse_needs_are_refused() {
        for (list, index) in [
            (&["*"][..], 0),
            (&["ok", "Content-Length"][..], 1),
            (&["content-*"][..], 0),
            (&["Transfer_Encoding"][..], 0),
            (&["h*"][..], 0),
            (&["x proxy"][..], 0),
            (&[""][..], 0),
            (&["*-User"][..], 0),
            (&["X-*-Role"][..], 0),
            (&["X-**"][..], 0),
        ] {
            let err = rules(list).expect_err("refused");
            assert_eq!(err.0, index, "{list:?}: {}", err.1);
        }
        assert!(rules(&[]).expect("empty").is_empty());
    }
}
