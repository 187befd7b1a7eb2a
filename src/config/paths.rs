//! `[paths]` validation, and the checks that tie route paths to the canonical form
//! requests are matched in.

use super::fields::ConfigErrors;
use super::{FileConfig, FilePaths};
use crate::canonical::{self, EscapedSlashes, PathParams, PathRules};

pub(super) fn validate_paths(e: &mut ConfigErrors, raw: &FilePaths) -> PathRules {
    let escaped_slashes = match raw.escaped_slashes.as_str() {
        "reject" => EscapedSlashes::Reject,
        "keep" => EscapedSlashes::Keep,
        "decode" => EscapedSlashes::Decode,
        other => {
            e.push(
                "paths.escaped_slashes",
                format!("{other:?} is not reject, keep or decode"),
            );
            EscapedSlashes::Reject
        }
    };
    let path_params = match raw.path_params.as_str() {
        "reject" => PathParams::Reject,
        "strip" => PathParams::Strip,
        "keep" => PathParams::Keep,
        other => {
            e.push(
                "paths.path_params",
                format!("{other:?} is not reject, strip or keep"),
            );
            PathParams::Reject
        }
    };
    PathRules {
        merge_slashes: raw.merge_slashes,
        escaped_slashes,
        path_params,
    }
}

/// Route paths must be written canonically (requests are, before they are matched), and
/// two routes that match case-insensitively must not differ only in case.
pub(super) fn check_route_paths(e: &mut ConfigErrors, raw: &FileConfig, rules: &PathRules) {
    if let Some(endpoint) = raw.tickets.as_ref().map(|t| t.endpoint.as_str()) {
        if endpoint.starts_with('/') {
            canonical_or_error(e, "tickets.endpoint", endpoint, rules);
        }
    }
    if let Some(endpoint) = raw.logout.as_ref().map(|l| l.endpoint.as_str()) {
        if endpoint.starts_with('/') {
            canonical_or_error(e, "logout.endpoint", endpoint, rules);
        }
    }
    for (i, route) in raw.routes.iter().enumerate() {
        let written = route.path.trim_end_matches('/');
        if !written.starts_with('/') || written.contains(['?', '#', '*']) {
            continue; // reported by the route's own validation
        }
        canonical_or_error(e, &format!("route[{i}].path"), written, rules);
        for (j, other) in raw.routes.iter().enumerate().skip(i + 1) {
            let other_written = other.path.trim_end_matches('/');
            let either_folds = !route.case_sensitive || !other.case_sensitive;
            if either_folds
                && written != other_written
                && written.eq_ignore_ascii_case(other_written)
            {
                e.push(
                    format!("route[{j}].path"),
                    format!("differs from route[{i}].path only in case; set case_sensitive = true on both"),
                );
            }
        }
    }
}

fn canonical_or_error(e: &mut ConfigErrors, key: &str, written: &str, rules: &PathRules) {
    match canonical::path(written, rules) {
        Ok(c) if c == written => {}
        Ok(c) => e.push(
            key,
            format!("write it canonically, as {c:?}: requests are matched in that form"),
        ),
        Err(why) => e.push(key, format!("no request can match it: {why}")),
    }
}
