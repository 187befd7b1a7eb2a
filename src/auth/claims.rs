//! The claims of a token that validated (or of a ticket that carried them), and the clock
//! they are judged against.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::auth::error::AuthError;

/// A token's verified claims.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// Refuses a `sub` or `jti` that is present but not a string (RFC 7519 §4.1.2, §4.1.7);
/// `null` counts as absent, as every reader takes it. Revocation, sign-out and the access
/// log read them as strings: a token with a number there could be neither revoked nor
/// named, while identity headers still carried it.
pub(crate) fn check_identifiers(claims: &Claims) -> Result<(), AuthError> {
    for name in ["sub", "jti"] {
        if claims
            .get(name)
            .is_some_and(|v| !v.is_string() && !v.is_null())
        {
            return Err(AuthError::BadIdClaim);
        }
    }
    Ok(())
}

/// Seconds since the Unix epoch; 0 for a clock set before it.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
