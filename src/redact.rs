//! The one redaction of query strings and URLs, used by the access log, the URI sent
//! upstream, error logs and `gatehouse check`.
//!
//! A parameter is matched by its percent-decoded name, ignoring ASCII case, so
//! `ACCESS%5FTOKEN=...` cannot slip a token past a list that says `access_token`.

use std::borrow::Cow;

pub const REDACTED: &str = "REDACTED";

/// A compiled list of sensitive query parameter names.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    names: Vec<String>,
}

impl Redactor {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut names: Vec<String> = names.into_iter().map(str::to_ascii_lowercase).collect();
        names.sort();
        names.dedup();
        Self { names }
    }

    fn is_sensitive(&self, raw_name: &str) -> bool {
        if self.names.is_empty() {
            return false;
        }
        let decoded = decode_name(raw_name);
        self.names.iter().any(|n| n.eq_ignore_ascii_case(&decoded))
    }

    /// The query with every sensitive value written `REDACTED`, for logs.
    pub fn for_log<'q>(&self, query: &'q str) -> Cow<'q, str> {
        if !query
            .split('&')
            .any(|pair| self.is_sensitive(name_of(pair)))
        {
            return Cow::Borrowed(query);
        }
        let pairs: Vec<Cow<'_, str>> = query
            .split('&')
            .map(|pair| {
                let name = name_of(pair);
                if self.is_sensitive(name) {
                    Cow::Owned(format!("{name}={REDACTED}"))
                } else {
                    Cow::Borrowed(pair)
                }
            })
            .collect();
        Cow::Owned(pairs.join("&"))
    }

    /// The query without sensitive parameters, for the upstream; `None` when nothing is left.
    pub fn for_upstream<'q>(&self, query: &'q str) -> Option<Cow<'q, str>> {
        if !query
            .split('&')
            .any(|pair| self.is_sensitive(name_of(pair)))
        {
            return (!query.is_empty()).then_some(Cow::Borrowed(query));
        }
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.is_empty() && !self.is_sensitive(name_of(pair)))
            .collect();
        (!kept.is_empty()).then(|| Cow::Owned(kept.join("&")))
    }

    /// A path with its query redacted for logs.
    pub fn path_and_query_for_log(&self, uri: &http::Uri) -> String {
        match uri.query() {
            Some(q) => format!("{}?{}", uri.path(), self.for_log(q)),
            None => uri.path().to_string(),
        }
    }
}

fn name_of(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(name, _)| name)
}

fn decode_name(raw: &str) -> Cow<'_, str> {
    if raw.bytes().any(|b| b == b'%' || b == b'+') {
        form_urlencoded::parse(raw.as_bytes())
            .next()
            .map_or(Cow::Borrowed(raw), |(name, _)| {
                Cow::Owned(name.into_owned())
            })
    } else {
        Cow::Borrowed(raw)
    }
}

/// `scheme://user:pass@host/...` with the credentials masked; `None` when there are none.
pub fn mask_userinfo(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (_, host) = authority.rsplit_once('@')?;
    Some(format!("{scheme}://{REDACTED}@{host}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        Redactor::new(["access_token", "ticket"])
    }

    #[test]
    fn log_form_replaces_only_sensitive_values() {
        let r = redactor();
        assert_eq!(
            r.for_log("id=1&access_token=abc.def&x"),
            "id=1&access_token=REDACTED&x"
        );
        assert_eq!(r.for_log("id=1"), "id=1");
        assert_eq!(
            r.for_log("ACCESS%5Ftoken=abc&Ticket=t"),
            "ACCESS%5Ftoken=REDACTED&Ticket=REDACTED"
        );
        assert_eq!(r.for_log("access_token"), "access_token=REDACTED");
    }

    #[test]
    fn upstream_form_drops_sensitive_parameters() {
        let r = redactor();
        assert_eq!(
            r.for_upstream("id=1&access_token=abc&negotiateVersion=1")
                .as_deref(),
            Some("id=1&negotiateVersion=1")
        );
        assert_eq!(r.for_upstream("access_token=abc"), None);
        assert_eq!(
            r.for_upstream("a%63cess_token=abc&b=2").as_deref(),
            Some("b=2")
        );
        assert_eq!(r.for_upstream("").as_deref(), None);
    }

    #[test]
    fn userinfo_is_masked() {
        assert_eq!(
            mask_userinfo("redis://:pw@redis:6379/0").as_deref(),
            Some("redis://REDACTED@redis:6379/0")
        );
        assert_eq!(mask_userinfo("http://host/path?a=b@c"), None);
        assert_eq!(mask_userinfo("plain"), None);
    }
}
