//! The redaction functions of `gatehouse::redact`.
//!
//! Input: line 1 is a comma-separated list of sensitive parameter names (like
//! `log.redact_params`); the rest is used as a query string (`for_log`, `for_upstream`), as a
//! request target (`path_and_query_for_log`) and as a URL (`mask_userinfo`).
//!
//! Checked beyond "no panic", by decoding the output the way an upstream application does
//! (`application/x-www-form-urlencoded`, pairs split on `&` and `;`, names compared after
//! `fold_name`, and also plainly decoded ignoring ASCII case):
//! - `for_log`: every sensitive parameter's value reads `REDACTED`, and the other pairs are
//!   unchanged and in order;
//! - `for_upstream`: no sensitive parameter is left; the other non-empty pairs are kept;
//! - `mask_userinfo`: the result is masked and masking it again changes nothing.

#![no_main]

use gatehouse::redact::{fold_name, mask_userinfo, Redactor, REDACTED};
use libfuzzer_sys::fuzz_target;

/// A pair's name is sensitive when it folds to a listed name, or plainly decodes to one.
fn sensitive(names: &[&str], pair: &str) -> bool {
    let raw = pair.split_once('=').map_or(pair, |(n, _)| n);
    let decoded = form_urlencoded::parse(pair.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default();
    let folded = fold_name(raw);
    // A listed name with `%` or `+` is folded (decoded) itself, so only its fold counts.
    names.iter().any(|n| {
        (!n.contains(['%', '+']) && n.eq_ignore_ascii_case(&decoded)) || fold_name(n) == folded
    })
}

fn pairs(query: &str) -> Vec<&str> {
    query.split(['&', ';']).collect()
}

fn check_log(names: &[&str], query: &str, logged: &str) {
    let before = pairs(query);
    let after = pairs(logged);
    assert_eq!(
        before.len(),
        after.len(),
        "for_log changed the pair count: {query:?} -> {logged:?}"
    );
    for (b, a) in before.iter().zip(&after) {
        if sensitive(names, b) {
            let value = form_urlencoded::parse(a.as_bytes())
                .next()
                .map(|(_, v)| v.into_owned());
            assert_eq!(value.as_deref(), Some(REDACTED), "{b:?} logged as {a:?}");
        } else {
            assert_eq!(b, a, "a non-sensitive pair was changed");
        }
    }
    for pair in pairs(logged) {
        let value = pair.split_once('=').map(|(_, v)| v);
        assert!(
            !sensitive(names, pair) || value == Some(REDACTED),
            "{pair} in the log form {logged:?}"
        );
    }
}

fn check_upstream(names: &[&str], query: &str, sent: Option<&str>) {
    let sent = sent.unwrap_or("");
    for pair in pairs(sent) {
        assert!(
            !sensitive(names, pair),
            "{pair} sent upstream in {sent:?} (from {query:?})"
        );
    }
    let kept: Vec<&str> = pairs(query)
        .into_iter()
        .filter(|p| !p.is_empty() && !sensitive(names, p))
        .collect();
    let sent_pairs: Vec<&str> = pairs(sent).into_iter().filter(|p| !p.is_empty()).collect();
    assert_eq!(
        kept, sent_pairs,
        "for_upstream dropped or changed a pair of {query:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let names: Vec<&str> = first.split(',').collect();
    let redactor = Redactor::new(names.iter().copied());

    let logged = redactor.for_log(rest);
    check_log(&names, rest, &logged);
    let sent = redactor.for_upstream(rest);
    check_upstream(&names, rest, sent.as_deref());

    if let Ok(uri) = http::Uri::try_from(rest) {
        let line = redactor.path_and_query_for_log(&uri);
        assert!(line.starts_with(uri.path()));
        if let Some(q) = uri.query() {
            check_log(&names, q, &line[uri.path().len() + 1..]);
        }
    }

    if let Some(masked) = mask_userinfo(rest) {
        assert!(masked.contains(&format!("://{REDACTED}@")), "{masked:?}");
        assert_eq!(mask_userinfo(&masked).as_deref(), Some(masked.as_str()));
    }
});
