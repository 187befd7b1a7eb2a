//! `[limits]` keys for what gatehouse holds before a caller is authenticated.

use super::fields::{duration, ConfigErrors};
use super::types::PreAuthLimits;
use super::FileLimits;

/// Room around the token in an auth message: `{"type":"auth","token":""}`, other fields the
/// client adds, and the frame header.
const AUTH_MESSAGE_OVERHEAD: usize = 1024;

/// `pre_auth_bytes` when unset: the largest token allowed with room for the message around it.
pub(super) fn default_pre_auth_bytes(max_token_bytes: usize) -> usize {
    max_token_bytes.saturating_add(AUTH_MESSAGE_OVERHEAD)
}
/// The least room besides the token that still fits the bare auth message and its header.
const SMALLEST_OVERHEAD: usize = 64;
/// The shared budget is a memory bound; more than this is not one.
const LARGEST_TOTAL: usize = 1 << 30;

pub(super) fn pre_auth(e: &mut ConfigErrors, limits: &FileLimits) -> PreAuthLimits {
    let token = limits.max_token_bytes;
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
