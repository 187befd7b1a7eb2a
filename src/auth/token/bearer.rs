//! `Authorization: Bearer <token>` (RFC 6750 §2.1). Another scheme (Basic, say) is not a
//! bearer token and counts as none; a bearer header without a token is malformed.

use http::header::AUTHORIZATION;
use http::HeaderMap;

use crate::auth::error::AuthError;

pub(super) fn find(headers: &HeaderMap) -> Result<Option<String>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        // Two Authorization headers: which one a backend would read is anyone's guess.
        return Err(AuthError::Malformed);
    }
    let bytes = value.as_bytes();
    // The scheme ends at the first space or tab, or with the value: hyper trims a trailing
    // space, so `Bearer ` arrives as `Bearer`, which is a bearer header without a token.
    let split = bytes
        .iter()
        .position(|b| *b == b' ' || *b == b'\t')
        .unwrap_or(bytes.len());
    let (scheme, rest) = bytes.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    if !rest.starts_with(b" ") {
        // Nothing after the scheme, or a tab where RFC 9110 wants a space.
        return Err(AuthError::Malformed);
    }
    let token = std::str::from_utf8(rest)
        .map_err(|_| AuthError::Malformed)?
        .trim_matches(' ');
    if token.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(Some(token.to_string()))
}
