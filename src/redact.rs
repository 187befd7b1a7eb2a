//! The one redaction of query strings and URLs, used by the access log, the URI sent
//! upstream, error logs and `gatehouse check`, and the list of token cookies the upstream
//! never receives.
//!
//! Names are compared after [`fold_name`], the spelling a backend reads: percent-decoded,
//! ASCII case ignored, and PHP's and Rack's folding applied (`access.token`, `access token`,
//! `access_token[]`, `[access_token]` all mean `access_token`), so no spelling slips a token
//! past the list. A query is split on `;` as well as `&`, since some servers do.

use std::borrow::Cow;

pub const REDACTED: &str = "REDACTED";

/// The compiled lists of credential names: query parameters and cookies, both folded.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    names: Vec<String>,
    cookies: Vec<String>,
    /// Secret in logs but meant for the upstream (a SignalR connection token in `id`).
    log_only: Vec<String>,
}

/// A query parameter or cookie name as the frameworks behind a proxy read it: decoded
/// (`%5F`, `+`), cut at a NUL, trimmed, brackets before it and everything from a `]` on
/// dropped (Rack 2), an array suffix dropped (`name[]`, `name[x]`), ` `, `.` and an
/// unclosed `[` turned into `_` (PHP), and ASCII-lowercased (ASP.NET).
pub fn fold_name(raw: &str) -> String {
    // `&` would end the name for the form decoder; a cookie name may contain one.
    let decoded: String = form_urlencoded::parse(raw.replace('&', "%26").as_bytes())
        .next()
        .map_or_else(String::new, |(name, _)| name.into_owned());
    let name = decoded.split('\0').next().unwrap_or_default().trim();
    // Rack 2 (Rails before 7.1, Sinatra) skips brackets before a name and reads the name up
    // to the first `]`: `[access_token]` and `access_token]` are `access_token` there.
    let name = name.trim_start_matches(['[', ']']);
    let name = match name.find('[') {
        Some(open) if name[open..].contains(']') => &name[..open],
        _ => name,
    };
    let name = name.split(']').next().unwrap_or_default();
    name.chars()
        .map(|c| match c {
            ' ' | '.' | '[' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Whether `raw` folds to `folded` (which must be folded already), without allocating for
/// the usual plain name: one with nothing [`fold_name`] would decode, cut or replace.
pub fn folds_to(raw: &str, folded: &str) -> bool {
    if is_plain(raw) {
        raw.eq_ignore_ascii_case(folded)
    } else {
        fold_name(raw) == folded
    }
}

/// Whether `raw` folds to a name on either list (both folded), without allocating for a
/// plain name (the usual case: this runs for every query parameter of every request).
fn in_lists(raw: &str, lists: [&[String]; 2]) -> bool {
    if lists.iter().all(|l| l.is_empty()) {
        return false;
    }
    let mut names = lists.into_iter().flatten();
    if is_plain(raw) {
        names.any(|n| raw.eq_ignore_ascii_case(n))
    } else {
        let folded = fold_name(raw);
        names.any(|n| *n == folded)
    }
}

/// Nothing in it that [`fold_name`] would decode, cut or replace.
fn is_plain(raw: &str) -> bool {
    raw.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~'))
}

fn folded<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = names.into_iter().map(fold_name).collect();
    names.sort();
    names.dedup();
    names
}

impl Redactor {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            names: folded(names),
            cookies: Vec::new(),
            log_only: Vec::new(),
        }
    }

    /// Also redacts these parameters in logs, while still forwarding them.
    pub fn with_log_only<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.log_only.extend(folded(names));
        self
    }

    fn is_logged_secret(&self, raw_name: &str) -> bool {
        in_lists(raw_name, [&self.names, &self.log_only])
    }

    /// Adds query parameters and cookies a token is read from (the config knows which:
    /// `config::redaction`).
    pub fn with_names<'a>(
        mut self,
        params: impl IntoIterator<Item = &'a str>,
        cookies: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        self.names.extend(params.into_iter().map(fold_name));
        self.cookies.extend(cookies.into_iter().map(fold_name));
        for list in [&mut self.names, &mut self.cookies] {
            list.sort();
            list.dedup();
        }
        self
    }

    fn is_sensitive(&self, raw_name: &str) -> bool {
        in_lists(raw_name, [&self.names, &[]])
    }

    /// Whether a cookie of this name carries a token for some route.
    pub fn is_token_cookie(&self, raw_name: &str) -> bool {
        in_lists(raw_name, [&self.cookies, &[]])
    }

    fn any_sensitive(&self, query: &str) -> bool {
        pairs(query).any(|(_, pair)| self.is_sensitive(name_of(pair)))
    }

    /// The query with every sensitive value written `REDACTED`, for logs.
    pub fn for_log<'q>(&self, query: &'q str) -> Cow<'q, str> {
        if !pairs(query).any(|(_, pair)| self.is_logged_secret(name_of(pair))) {
            return Cow::Borrowed(query);
        }
        let mut out = String::with_capacity(query.len());
        self.write_for_log(query, &mut out);
        Cow::Owned(out)
    }

    /// [`Redactor::for_log`] appended to `out`, in one pass.
    fn write_for_log(&self, query: &str, out: &mut String) {
        for (separator, pair) in pairs(query) {
            out.push_str(separator);
            let name = name_of(pair);
            if self.is_logged_secret(name) {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            } else {
                out.push_str(pair);
            }
        }
    }

    /// The query without sensitive parameters, for the upstream; `None` when nothing is left.
    pub fn for_upstream<'q>(&self, query: &'q str) -> Option<Cow<'q, str>> {
        if !self.any_sensitive(query) {
            return (!query.is_empty()).then_some(Cow::Borrowed(query));
        }
        let mut out = String::with_capacity(query.len());
        let kept = pairs(query).filter(|(_, p)| !p.is_empty() && !self.is_sensitive(name_of(p)));
        for (separator, pair) in kept {
            if !out.is_empty() {
                out.push_str(separator);
            }
            out.push_str(pair);
        }
        (!out.is_empty()).then_some(Cow::Owned(out))
    }

    /// A path with its query redacted for logs.
    pub fn path_and_query_for_log(&self, uri: &http::Uri) -> String {
        let path = uri.path();
        let Some(query) = uri.query() else {
            return path.to_string();
        };
        // Built in place: this runs for every logged request.
        let mut out = String::with_capacity(path.len() + 1 + query.len());
        out.push_str(path);
        out.push('?');
        self.write_for_log(query, &mut out);
        out
    }
}

/// Each `&`- or `;`-separated pair with the separator before it (`""` for the first).
fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query_pairs(query).map(|(at, pair)| {
        let separator = at.checked_sub(1).and_then(|s| query.get(s..at));
        (separator.unwrap_or_default(), pair)
    })
}

/// Each `&`- or `;`-separated pair of `query` with its byte offset: the one way every
/// reader of a query (redaction, SignalR affinity) splits it. Bytes, not chars: both
/// separators are ASCII, and this runs over every query of every request.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let at = start?;
        let rest = query.get(at..)?;
        let len = memchr::memchr2(b'&', b';', rest.as_bytes());
        start = len.map(|len| at + len + 1);
        Some((at, len.and_then(|len| rest.get(..len)).unwrap_or(rest)))
    })
}

fn name_of(pair: &str) -> &str {
    split_pair(pair).0
}

/// A query pair's name and value (`""` when it has no `=`). By byte: a char pattern costs
/// more than the pair is long, and this runs for every pair of every query.
pub(crate) fn split_pair(pair: &str) -> (&str, &str) {
    match memchr::memchr(b'=', pair.as_bytes()) {
        Some(at) => (&pair[..at], &pair[at + 1..]),
        None => (pair, ""),
    }
}

/// A URL as `check` and warnings print it: credentials (`user:pass@`) and every query value
/// masked (`?key=REDACTED`), since either may be a secret; `None` when there is nothing to
/// mask. The fragment goes too: no one configures one, and it could hold anything.
pub fn mask_url(url: &str) -> Option<String> {
    let masked_userinfo = mask_userinfo(url);
    let base = masked_userinfo.as_deref().unwrap_or(url);
    let (head, query) = match base.split_once('?') {
        Some((head, query)) if base.contains("://") => (head, query),
        _ => return masked_userinfo,
    };
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    let pairs: Vec<String> = query_pairs(query)
        .map(|(_, pair)| match split_pair(pair) {
            (name, "") => name.to_string(),
            (name, _) => format!("{name}={REDACTED}"),
        })
        .collect();
    Some(format!("{head}?{}", pairs.join("&")))
}

/// A URL for a log line: no query or fragment (either may carry a secret) and its
/// credentials masked.
pub fn url_for_logs(url: &str) -> String {
    let bare = url.split(['?', '#']).next().unwrap_or_default();
    mask_userinfo(bare).unwrap_or_else(|| bare.to_string())
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

    #[test]
    fn query_pairs_split_exactly_as_str_split_on_both_separators() {
        for query in [
            "",
            "a",
            "a=1&b=2",
            "a=1;b=2&",
            "&&",
            ";",
            "x=é&y=ü;z",
            "=&=;",
            "a=%26&b",
        ] {
            let ours: Vec<(usize, &str)> = query_pairs(query).collect();
            let mut at = 0;
            let theirs: Vec<(usize, &str)> = query
                .split(['&', ';'])
                .map(|pair| {
                    let here = at;
                    at += pair.len() + 1;
                    (here, pair)
                })
                .collect();
            assert_eq!(ours, theirs, "{query:?}");
            let rebuilt: String = pairs(query)
                .map(|(sep, pair)| format!("{sep}{pair}"))
                .collect();
            assert_eq!(rebuilt, query);
        }
    }

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
        assert_eq!(
            r.for_upstream("a=1;access_token=x&b=2;c=3").as_deref(),
            Some("a=1&b=2;c=3")
        );
        assert_eq!(r.for_upstream("q=a;b&c").as_deref(), Some("q=a;b&c"));
    }

    #[test]
    fn names_fold_the_way_frameworks_read_them() {
        for spelling in [
            "access_token",
            "ACCESS_Token",
            "access%5Ftoken",
            "access%5ftoken",
            "access+token",
            "access%20token",
            "access.token",
            "access[token",
            "access_token[]",
            "access_token[x]",
            "access_token[x][y]",
            "%20access_token",
            " access_token ",
            "access_token%00junk",
            "[access_token]",
            "access_token]",
            "]access_token",
            "[[access_token]]",
            "%5Baccess_token%5D",
            "access_token]x",
        ] {
            assert_eq!(fold_name(spelling), "access_token", "{spelling}");
        }
        for other in [
            "access-token",
            "accesstoken",
            "access_tokens",
            "[x]access_token",
            "",
        ] {
            assert_ne!(fold_name(other), "access_token", "{other}");
        }
        assert_eq!(fold_name("a&b"), "a&b");
    }

    #[test]
    fn every_spelling_is_redacted_and_stripped() {
        let r = redactor();
        let query = "x=1&access_token[]=s1&access+token=s2;access_token=s3&Ticket[a]=s4&y=2";
        assert_eq!(
            r.for_log(query),
            "x=1&access_token[]=REDACTED&access+token=REDACTED;access_token=REDACTED\
             &Ticket[a]=REDACTED&y=2"
        );
        assert_eq!(r.for_upstream(query).as_deref(), Some("x=1&y=2"));
    }

    #[test]
    fn token_params_and_cookies_are_redacted() {
        let r = Redactor::new(["code"]).with_names(["at", "ticket"], ["session_token"]);
        assert_eq!(
            r.for_upstream("at=1&ticket=2&code=3&k=4").as_deref(),
            Some("k=4")
        );
        assert!(r.is_token_cookie("SESSION.token"));
        assert!(r.is_token_cookie("session_token[0]"));
        assert!(!r.is_token_cookie("session"));
        assert!(!r.is_token_cookie("at"));
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

    #[test]
    fn urls_are_printed_without_credentials_or_query_values() {
        assert_eq!(
            mask_url("https://u:pw@idp.example/jwks?key=s3cret&v=2#frag").as_deref(),
            Some("https://REDACTED@idp.example/jwks?key=REDACTED&v=REDACTED")
        );
        assert_eq!(
            mask_url("https://idp.example/jwks?flag").as_deref(),
            Some("https://idp.example/jwks?flag")
        );
        assert_eq!(mask_url("https://idp.example/jwks"), None);
        assert_eq!(mask_url("not a url?a=b"), None);
        assert_eq!(
            url_for_logs("https://u:p@idp.example/jwks?key=s#x"),
            "https://REDACTED@idp.example/jwks"
        );
    }

    #[test]
    fn a_logged_target_keeps_its_path_and_redacts_its_query() {
        let r = redactor().with_log_only(["id"]);
        let log = |target: &str| r.path_and_query_for_log(&target.parse().unwrap());
        assert_eq!(
            log("/hub?a=1&ID=sealed;access_token=t&b"),
            "/hub?a=1&ID=REDACTED;access_token=REDACTED&b"
        );
        assert_eq!(log("/hub?a=1&b=2"), "/hub?a=1&b=2");
        assert_eq!(log("/hub?"), "/hub?");
        assert_eq!(log("/hub"), "/hub");
    }

    #[test]
    fn log_only_names_are_redacted_in_logs_and_still_forwarded() {
        let r = redactor().with_log_only(["id"]);
        assert_eq!(
            r.for_log("id=secret&Id=x&n=1"),
            "id=REDACTED&Id=REDACTED&n=1"
        );
        assert_eq!(
            r.for_upstream("id=secret&access_token=t").as_deref(),
            Some("id=secret")
        );
    }

    #[test]
    fn folds_to_agrees_with_fold_name() {
        for raw in [
            "id", "ID", "Id", "%69d", "i%64", "id[]", "id[x]", " id", "id\0x", "i.d", "idx", "x",
            "",
        ] {
            assert_eq!(folds_to(raw, "id"), fold_name(raw) == "id", "{raw:?}");
        }
    }
}
