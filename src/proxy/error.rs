//! The request path's errors and the one place they become responses.
//!
//! Each layer has its own enum (`AuthError` for extraction, validation and policy;
//! `UpstreamError` for forwarding); `ProxyError` wraps them and [`ProxyError::into_response`]
//! picks status, `WWW-Authenticate` (RFC 6750 §3) and a short JSON body with an exhaustive
//! match. Bodies carry a fixed reason code and never anything from the request.

use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, Response, StatusCode};

use crate::auth::error::AuthError;
use crate::auth::revocation::RevocationError;
use crate::body::Body;
use crate::tickets::TicketError;
use crate::upstream::error::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches")]
    NoRoute,
    #[error(transparent)]
    Ticket(#[from] crate::tickets::TicketError),
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// `limit` names the limit in `gatehouse_limit_hits_total`.
    #[error("too many requests")]
    RateLimited {
        retry_after_secs: u64,
        limit: &'static str,
    },
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request target cannot be made unambiguous (see `canonical`).
    #[error("bad request target: {0}")]
    Path(#[from] crate::canonical::Refusal),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("token revoked")]
    Revoked,
    #[error("the shared store is unavailable")]
    StoreUnavailable,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The bytes held for unauthenticated callers are spent (`crate::proxy::pre_auth`).
    #[error(transparent)]
    OverBudget(#[from] crate::proxy::pre_auth::OverBudget),
    /// A body gatehouse reads itself did not arrive within `limits.body_read_timeout`.
    #[error("request body not received in time")]
    BodyTimeout,
}

impl From<RevocationError> for ProxyError {
    fn from(e: RevocationError) -> Self {
        match e {
            RevocationError::Revoked => ProxyError::Revoked,
            RevocationError::Unavailable => ProxyError::StoreUnavailable,
        }
    }
}

impl From<crate::redis::StoreError> for ProxyError {
    fn from(_: crate::redis::StoreError) -> Self {
        ProxyError::StoreUnavailable
    }
}

impl ProxyError {
    pub fn into_response(self) -> Response<Body> {
        match self {
            ProxyError::NoRoute => json(
                StatusCode::NOT_FOUND,
                "no_route",
                "no route matches this path",
            ),
            ProxyError::Ticket(TicketError::Unavailable) | ProxyError::StoreUnavailable => json(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the shared store is unavailable; try again",
            ),
            ProxyError::Revoked => {
                let mut r = json(
                    StatusCode::UNAUTHORIZED,
                    "token_revoked",
                    "the token has been revoked",
                );
                r.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static(INVALID_TOKEN));
                r
            }
            ProxyError::Ticket(e) => {
                let mut r = json(StatusCode::UNAUTHORIZED, e.reason(), &e.to_string());
                r.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static(INVALID_TOKEN));
                r
            }
            ProxyError::OriginNotAllowed => json(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this origin may not open connections here",
            ),
            ProxyError::RateLimited {
                retry_after_secs, ..
            } => {
                let mut r = json(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down");
                r.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs),
                );
                r
            }
            ProxyError::BadRequest(why) => json(StatusCode::BAD_REQUEST, "bad_request", why),
            ProxyError::Path(why) => json(StatusCode::BAD_REQUEST, why.reason(), &why.to_string()),
            ProxyError::MethodNotAllowed => {
                let mut r = json(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "use POST",
                );
                r.headers_mut().insert(
                    http::header::ALLOW,
                    HeaderValue::from_static("POST, OPTIONS"),
                );
                r
            }
            ProxyError::OverBudget(_) => {
                let mut r = json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "over_capacity",
                    "too many unauthenticated requests in flight, try again",
                );
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            ProxyError::BodyTimeout => json(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            ),
            ProxyError::Auth(e) => auth_response(&e),
            ProxyError::Upstream(e) => match e {
                UpstreamError::Connect(_) | UpstreamError::Failed(_) => json(
                    StatusCode::BAD_GATEWAY,
                    e.kind(),
                    "the upstream could not be reached",
                ),
                UpstreamError::Timeout => json(
                    StatusCode::GATEWAY_TIMEOUT,
                    e.kind(),
                    "the upstream did not answer in time",
                ),
                UpstreamError::BodyTooLarge => json(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than this route accepts",
                ),
                UpstreamError::BadSubprotocol => json(
                    StatusCode::BAD_GATEWAY,
                    e.kind(),
                    "the upstream chose a subprotocol the client did not offer",
                ),
                UpstreamError::BodyStalled => json(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body stopped arriving",
                ),
                UpstreamError::BadRequest(_) => json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    e.kind(),
                    "the request could not be forwarded",
                ),
            },
        }
    }
}

const REALM: &str = "Bearer realm=\"gatehouse\"";
const INVALID_TOKEN: &str = "Bearer realm=\"gatehouse\", error=\"invalid_token\"";

fn auth_response(e: &AuthError) -> Response<Body> {
    let (status, challenge) = match e {
        // RFC 6750 §3.1: a request without credentials gets a challenge without an error code.
        AuthError::Missing => (StatusCode::UNAUTHORIZED, REALM.to_string()),
        AuthError::KeysUnavailable | AuthError::IntrospectionUnavailable => {
            (StatusCode::SERVICE_UNAVAILABLE, String::new())
        }
        AuthError::Forbidden { required_scopes } if required_scopes.is_empty() => (
            StatusCode::FORBIDDEN,
            format!("{REALM}, error=\"insufficient_scope\""),
        ),
        AuthError::Forbidden { required_scopes } => (
            StatusCode::FORBIDDEN,
            format!("{REALM}, error=\"insufficient_scope\", scope=\"{required_scopes}\""),
        ),
        AuthError::TooLarge
        | AuthError::Malformed
        | AuthError::DisallowedAlgorithm
        | AuthError::CriticalHeader
        | AuthError::WrongType
        | AuthError::UnknownIssuer
        | AuthError::UnknownKey
        | AuthError::BadSignature
        | AuthError::Expired
        | AuthError::NotYetValid
        | AuthError::WrongAudience
        | AuthError::Inactive
        | AuthError::MissingClaim
        | AuthError::BadDateClaim => (StatusCode::UNAUTHORIZED, INVALID_TOKEN.to_string()),
    };
    let mut response = json(status, e.reason(), &e.to_string());
    if !challenge.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// A short JSON error body: `{"error": code, "message": text}`, both fixed strings.
pub fn json(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    crate::body::json(
        status,
        &serde_json::json!({ "error": code, "message": message }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(e: AuthError) -> (StatusCode, Option<String>) {
        let r = ProxyError::Auth(e).into_response();
        let h = r
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        (r.status(), h)
    }

    #[test]
    fn missing_token_gets_a_challenge_without_error_code() {
        let (status, header) = challenge(AuthError::Missing);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(header.as_deref(), Some("Bearer realm=\"gatehouse\""));
    }

    #[test]
    fn invalid_token_says_invalid_token() {
        for e in [
            AuthError::Expired,
            AuthError::BadSignature,
            AuthError::TooLarge,
            AuthError::UnknownKey,
        ] {
            let (status, header) = challenge(e);
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(
                header.as_deref(),
                Some("Bearer realm=\"gatehouse\", error=\"invalid_token\"")
            );
        }
    }

    #[test]
    fn forbidden_names_the_required_scope() {
        let (status, header) = challenge(AuthError::Forbidden {
            required_scopes: "chat admin".into(),
        });
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            header.as_deref(),
            Some("Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"chat admin\"")
        );
    }

    #[test]
    fn upstream_timeout_is_504_and_no_route_404() {
        assert_eq!(
            ProxyError::Upstream(UpstreamError::Timeout)
                .into_response()
                .status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            ProxyError::NoRoute.into_response().status(),
            StatusCode::NOT_FOUND
        );
    }
}
