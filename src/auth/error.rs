//! `AuthError`: every way a caller can fail to prove who they are or what they may do,
//! from token extraction to policy; the proxy layer maps it to a response.

/// Why a caller was not let through. No variant holds token material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("token larger than the configured limit")]
    TooLarge,
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token algorithm is not allowed")]
    DisallowedAlgorithm,
    #[error("token has a critical header extension we do not understand")]
    CriticalHeader,
    #[error("token type is not the one the issuer requires")]
    WrongType,
    #[error("token issuer is not configured")]
    UnknownIssuer,
    #[error("token key id is not in the issuer's key set")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token lacks a required claim")]
    MissingClaim,
    #[error("token exp, nbf or iat is not a date between 1970 and 9999")]
    BadDateClaim,
    #[error("token sub or jti is not a string")]
    BadIdClaim,
    #[error("issuer keys are not available")]
    KeysUnavailable,
    #[error("token is not active")]
    Inactive,
    #[error("the introspection endpoint is unavailable")]
    IntrospectionUnavailable,
    #[error("token lacks required scope, role or claim")]
    Forbidden { required_scopes: String },
}

impl AuthError {
    /// The fixed reason code used in bodies, logs and the `auth_failures_total` label.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::TooLarge => "token_too_large",
            AuthError::Malformed => "malformed_token",
            AuthError::DisallowedAlgorithm => "disallowed_algorithm",
            AuthError::CriticalHeader => "critical_header",
            AuthError::WrongType => "wrong_token_type",
            AuthError::UnknownIssuer => "unknown_issuer",
            AuthError::UnknownKey => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::MissingClaim => "missing_claim",
            AuthError::BadDateClaim => "bad_date_claim",
            AuthError::BadIdClaim => "bad_id_claim",
            AuthError::KeysUnavailable => "keys_unavailable",
            AuthError::Inactive => "token_inactive",
            AuthError::IntrospectionUnavailable => "introspection_unavailable",
            AuthError::Forbidden { .. } => "insufficient_scope",
        }
    }
}
