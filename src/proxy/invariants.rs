//! The properties canonicalisation must keep, as one function the fuzz target
//! (`fuzz/fuzz_targets/canonical_path.rs`) and the corpus replay test
//! (`tests/canonical_corpus.rs`) both call on arbitrary request targets.
//!
//! For every target that is accepted: canonicalising again changes nothing; the output
//! holds no `//`, dot segment, encoded `/` `\` `.`, double encoding, backslash or NUL;
//! and the route gatehouse picks for it is the route a lenient backend would pick after
//! fully decoding it, resolving dots, merging slashes, dropping `;params`, folding case
//! and trimming names as Windows does (trailing dots and spaces, and leading spaces).

use http::{HeaderMap, HeaderValue, Method, Uri, Version};

use crate::canonical::{
    has_double_encoding, hex_pair, routing_path, target, EscapedSlashes, PathParams, PathRules,
    Target,
};
use crate::proxy::route::RouteTable;

const ROUTES: &[&str] = &[
    "/",
    "/public",
    "/api",
    "/api/admin",
    "/api/admin/users",
    "/hubs/chat",
];

/// The rule sets whose output must stay inside the judged route. `keep` modes forward
/// what a lenient backend reads differently by design, so only idempotence holds there.
const STRICT: &[PathRules] = &[
    PathRules {
        merge_slashes: true,
        escaped_slashes: EscapedSlashes::Reject,
        path_params: PathParams::Reject,
    },
    PathRules {
        merge_slashes: true,
        escaped_slashes: EscapedSlashes::Decode,
        path_params: PathParams::Strip,
    },
];
const LENIENT: &[PathRules] = &[PathRules {
    merge_slashes: false,
    escaped_slashes: EscapedSlashes::Keep,
    path_params: PathParams::Keep,
}];

/// Checks every invariant for one request target; `Err` describes the first broken one.
pub fn check(input: &[u8]) -> Result<(), String> {
    let Ok(uri) = Uri::try_from(input) else {
        return Ok(()); // hyper refuses it before gatehouse sees it
    };
    let table = RouteTable::new(ROUTES.iter().map(|p| (p.to_string(), *p)));
    for rules in STRICT {
        if let Some(path) = idempotent(&uri, rules)? {
            clean(&path)?;
            same_route(&table, &path, rules)?;
        }
    }
    for rules in LENIENT {
        idempotent(&uri, rules)?;
    }
    Ok(())
}

/// The canonical path when the target is accepted, after checking a second pass keeps it.
fn idempotent(uri: &Uri, rules: &PathRules) -> Result<Option<String>, String> {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::HOST,
        HeaderValue::from_static("gatehouse.test"),
    );
    let run = |uri: &Uri| {
        let t = Target {
            method: &Method::GET,
            uri,
            version: Version::HTTP_11,
            headers: &headers,
            https: false,
        };
        target(&t, rules)
    };
    let Ok(first) = run(uri) else {
        return Ok(None);
    };
    match run(&first.uri) {
        Ok(second) if second.uri == first.uri => Ok(Some(first.uri.path().to_string())),
        other => Err(format!(
            "{uri} -> {} -> {other:?} under {rules:?}",
            first.uri
        )),
    }
}

fn clean(path: &str) -> Result<(), String> {
    let upper = path.to_ascii_uppercase();
    let dot_segment = path.split('/').any(|s| s == "." || s == "..");
    let bad = ["//", "%2F", "%5C", "%2E", "\\", "\0", "%00", ";"]
        .into_iter()
        .find(|needle| upper.contains(needle));
    if dot_segment || bad.is_some() || has_double_encoding(&upper) {
        return Err(format!("{path:?} is not clean ({bad:?})"));
    }
    Ok(())
}

fn same_route(table: &RouteTable<&str>, path: &str, rules: &PathRules) -> Result<(), String> {
    let judged = table.find(&routing_path(path, rules)).copied();
    let backend = lenient(path);
    let acted = table.find(&backend).copied();
    if judged != acted {
        return Err(format!(
            "{path:?} judged under {judged:?}, a lenient backend reads {backend:?} under {acted:?}"
        ));
    }
    Ok(())
}

/// What a forgiving backend makes of a path: every escape decoded, dots resolved, slashes
/// merged, `;params` dropped, names trimmed, Unicode case folded.
fn lenient(path: &str) -> String {
    let decoded: Vec<u8> = percent_decode(path.as_bytes());
    let text = String::from_utf8_lossy(&decoded);
    let mut out: Vec<String> = Vec::new();
    for segment in text.split(['/', '\\']) {
        let name = segment.split(';').next().unwrap_or_default();
        let name = match name {
            "." | ".." => name,
            _ => name.trim_start_matches(' ').trim_end_matches(['.', ' ']),
        };
        match name {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(
                name.chars()
                    .flat_map(char::to_uppercase)
                    .flat_map(char::to_lowercase)
                    .collect(),
            ),
        }
    }
    format!("/{}", out.join("/"))
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match hex_pair(bytes.get(i + 1..i + 3)) {
            Some(b) if bytes[i] == b'%' => {
                out.push(b);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invariants_hold_for_the_attack_spellings() {
        for raw in [
            "/public/../api/admin",
            "/api/ADMIN",
            "/api/%61dmin",
            "/api//admin",
            "/api/x/../admin",
            "/api/admin;x=1",
            "/public/..;/api/admin",
            "/public/..%2fapi/admin",
            "/%2e%2e/api",
            "/api/admin.",
            "/api/admin%20",
            "/api/.../admin",
            "http://gatehouse.test/public/../api",
        ] {
            check(raw.as_bytes()).unwrap();
        }
    }
}
