//! `[limits]` keys for what gatehouse holds before a caller is authenticated: the size of
//! a request head and of the token in it, and the pre-authentication budget.

use super::fields::{duration, ConfigErrors};
use super::types::PreAuthLimits;
use super::FileLimits;

/// Room around the token in an auth message: `{"type":"auth","token":""}`, other fields the
/// client adds, and the frame header.
const AUTH_MESSAGE_OVERHEAD: usize = 1024;

/// The smallest request head gatehouse can be told to accept.
const SMALLEST_HEADER_BYTES: usize = 8192;
/// `max_token_bytes` when unset and the head allows it.
const DEFAULT_MAX_TOKEN_BYTES: usize = 16384;

/// `max_token_bytes` when unset. A header, query or cookie token travels in the request
/// head, so a token limit above the head's could never be reached there; the default
/// follows a smaller `max_header_bytes` down rather than making the documented minimum an
/// error of its own.
pub(super) fn default_max_token_bytes(max_header_bytes: usize) -> usize {
    DEFAULT_MAX_TOKEN_BYTES.min(max_header_bytes)
}

/// `max_header_bytes` and `max_token_bytes`; the token limit in force.
pub(super) fn head_and_token(e: &mut ConfigErrors, limits: &FileLimits) -> usize {
    let header = limits.max_header_bytes;
    let header_ok = header >= SMALLEST_HEADER_BYTES;
    if !header_ok {
        e.push(
            "limits.max_header_bytes",
            format!("must be at least {SMALLEST_HEADER_BYTES}"),
        );
    }
    let token = limits
        .max_token_bytes
        .unwrap_or(default_max_token_bytes(header));
    match limits.max_token_bytes {
        Some(0) => e.push("limits.max_token_bytes", "must be at least 1"),
        // Judged only against a head limit that is itself right: one error, not two.
        Some(set) if header_ok && set > header => e.push(
            "limits.max_token_bytes",
            format!(
                "{set} is more than limits.max_header_bytes ({header}): a token travels in \
                 the request head; lower max_token_bytes or raise max_header_bytes"
            ),
        ),
        _ => {}
    }
    token
}

/// `pre_auth_bytes` when unset: the largest token allowed with room for the message around it.
pub(super) fn default_pre_auth_bytes(max_token_bytes: usize) -> usize {
    max_token_bytes.saturating_add(AUTH_MESSAGE_OVERHEAD)
}
/// The least room besides the token that still fits the bare auth message and its header.
const SMALLEST_OVERHEAD: usize = 64;
/// The shared budget is a memory bound; more than this is not one.
const LARGEST_TOTAL: usize = 1 << 30;

/// `token`: the `max_token_bytes` in force ([`head_and_token`]).
pub(super) fn pre_auth(e: &mut ConfigErrors, limits: &FileLimits, token: usize) -> PreAuthLimits {
    let bytes = limits
        .pre_auth_bytes
        .unwrap_or(default_pre_auth_bytes(token));
    if bytes < token.saturating_add(SMALLEST_OVERHEAD) {
        e.push(
            "limits.pre_auth_bytes",
            format!(
                "must be at least limits.max_token_bytes + {SMALLEST_OVERHEAD} ({}), or an auth message with the largest token allowed could not arrive",
                token.saturating_add(SMALLEST_OVERHEAD)
            ),
        );
    }
    let total_bytes = limits.pre_auth_total_bytes;
    if total_bytes < bytes || total_bytes > LARGEST_TOTAL {
        e.push(
            "limits.pre_auth_total_bytes",
            format!("must be between limits.pre_auth_bytes ({bytes}) and {LARGEST_TOTAL}"),
        );
    }
    let body_read_timeout = duration(e, "limits.body_read_timeout", &limits.body_read_timeout);
    PreAuthLimits {
        bytes,
        total_bytes,
        body_read_timeout,
    }
}
