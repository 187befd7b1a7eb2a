//! The claims of a token that validated (or of a ticket that carried them), and the clock
//! they are judged against.

use std::time::{SystemTime, UNIX_EPOCH};

/// A token's verified claims.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// Seconds since the Unix epoch; 0 for a clock set before it.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
