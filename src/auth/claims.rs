//! The claims of a token that validated (or of a ticket that carried them), and the clock
//! they are judged against.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::auth::error::AuthError;

/// A token's verified claims.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// The longest `sub` or `jti` accepted: OpenID Connect caps `sub` at 255 characters, and
/// a revocation must be able to name it within the admin API's body limit.
pub(crate) const MAX_ID_BYTES: usize = 1024;

/// Refuses a `sub` or `jti` that is present but not a non-empty string of at most
/// [`MAX_ID_BYTES`] (RFC 7519 §4.1.2, §4.1.7 make them strings). Revocation, sign-out and
/// the access log find tokens by these strings: a token with a number, `null`, `""` or a
/// value too long to name there could not be revoked, while identity headers still
/// carried it.
pub(crate) fn check_identifiers(claims: &Claims) -> Result<(), AuthError> {
    for name in ["sub", "jti"] {
        match claims.get(name) {
            None => {}
            Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_BYTES => {}
            Some(_) => return Err(AuthError::BadIdClaim),
        }
    }
    Ok(())
}

/// A JWT with neither `sub` nor `jti` could be revoked by nothing short of removing its
/// signing key, so it is refused. An introspected token needs neither: the IdP answers
/// for its liveness on every cache miss.
pub(crate) fn check_revocable(claims: &Claims) -> Result<(), AuthError> {
    if claims.contains_key("sub") || claims.contains_key("jti") {
        Ok(())
    } else {
        Err(AuthError::MissingClaim)
    }
}

/// Seconds since the Unix epoch; 0 for a clock set before it.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
