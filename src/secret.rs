//! Types for values that must never be printed: a configured secret and a caller's token.
//!
//! Both print `REDACTED` through `Debug` and `Display` and deliberately implement no
//! `Serialize`, so neither a log macro, an error message nor a config dump can leak one.
//! The raw value is reachable only through `expose()`, which is easy to grep for.

use std::fmt;

/// A configured secret (HMAC key, admin bearer, client secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("REDACTED")
    }
}

/// A caller's bearer token, as found in the request.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerToken(REDACTED, {} bytes)", self.0.len())
    }
}

impl fmt::Display for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("REDACTED")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_type_prints_its_value() {
        let secret = Secret::new("hunter2".into());
        let token = BearerToken::new("eyJhbGciOi.secret.sig".into());
        for shown in [
            format!("{secret:?}"),
            format!("{secret}"),
            format!("{token:?}"),
            format!("{token}"),
        ] {
            assert!(
                !shown.contains("hunter2") && !shown.contains("eyJ"),
                "{shown}"
            );
            assert!(shown.contains("REDACTED"));
        }
    }
}
