//! The request path's errors and the one place they become responses.
//!
//! Each layer has its own enum (`AuthError` for extraction, validation and policy;
//! `UpstreamError` for forwarding); `ProxyError` wraps them. [`ProxyError::reason`] is the
//! one reason table: per variant a status, a reason code and how it is counted. The
//! response map ([`ProxyError::into_response`]), the access log and the metrics
//! ([`ProxyError::count`]) and the WebSocket refusals all read it. Bodies carry the fixed
//! reason code and never anything from the request.

use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, Response, StatusCode};

use crate::auth::error::AuthError;
use crate::auth::revocation::RevocationError;
use crate::body::Body;
use crate::metrics::Metrics;
use crate::tickets::TicketError;
use crate::upstream::error::{AtEndpoint, UpstreamError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
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
    /// A WebSocket handshake for another protocol version than RFC 6455's 13.
    #[error("unsupported WebSocket version")]
    WebSocketVersion,
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
    /// A body gatehouse reads itself is larger than its endpoint takes.
    #[error("request body too large")]
    BodyTooLarge,
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

/// How a refusal is counted, besides the access line's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    /// `gatehouse_auth_failures_total{reason}`, labelled with the reason code.
    AuthFailure,
    /// `gatehouse_limit_hits_total{limit}`, labelled with the limit's name.
    Limit(&'static str),
    /// `gatehouse_upstream_errors_total{route, kind}` and one warning line.
    Upstream,
    /// `gatehouse_upstream_errors_total{route, kind}` only: the client's doing, not worth a
    /// warning line (a stale or edited SignalR connection id).
    QuietUpstream,
    /// Only the access line.
    Nothing,
}

/// A refusal's status, its reason code (the body's `error`, the access line's `reason`,
/// the `auth_failures_total` label) and how it is counted: one row per `ProxyError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reason {
    pub status: StatusCode,
    pub code: &'static str,
    pub counted: Counted,
}

const fn row(status: StatusCode, code: &'static str, counted: Counted) -> Reason {
    Reason {
        status,
        code,
        counted,
    }
}

impl ProxyError {
    /// A small request body (a ticket or sign-out request) that could not be read:
    /// `refusal` says what it should have been.
    pub(crate) fn from_body(e: crate::proxy::pre_auth::BodyError, refusal: &'static str) -> Self {
        use crate::proxy::pre_auth::BodyError;
        match e {
            BodyError::Timeout => ProxyError::BodyTimeout,
            BodyError::Over(over) => ProxyError::OverBudget(over),
            BodyError::TooLarge => ProxyError::BodyTooLarge,
            BodyError::Broken => ProxyError::BadRequest(refusal),
        }
    }
}

impl ProxyError {
    /// The reason table. No catch-all arm: a new variant must be given its row here.
    pub(crate) fn reason(&self) -> Reason {
        use Counted::{AuthFailure, Limit, Nothing};
        match self {
            ProxyError::NoRoute => row(StatusCode::NOT_FOUND, "no_route", Nothing),
            // Counted as an auth failure as it always was: the ticket could not be judged.
            ProxyError::Ticket(TicketError::Unavailable) => row(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                AuthFailure,
            ),
            ProxyError::Ticket(e) => row(StatusCode::UNAUTHORIZED, e.reason(), AuthFailure),
            ProxyError::StoreUnavailable => row(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                Nothing,
            ),
            ProxyError::Revoked => row(StatusCode::UNAUTHORIZED, "token_revoked", AuthFailure),
            ProxyError::OriginNotAllowed => {
                row(StatusCode::FORBIDDEN, "origin_not_allowed", Nothing)
            }
            ProxyError::RateLimited { limit, .. } => {
                row(StatusCode::TOO_MANY_REQUESTS, "rate_limited", Limit(limit))
            }
            ProxyError::BadRequest(_) => row(StatusCode::BAD_REQUEST, "bad_request", Nothing),
            ProxyError::Path(refusal) => row(StatusCode::BAD_REQUEST, refusal.reason(), Nothing),
            ProxyError::MethodNotAllowed => row(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                Nothing,
            ),
            ProxyError::WebSocketVersion => {
                row(StatusCode::UPGRADE_REQUIRED, "websocket_version", Nothing)
            }
            ProxyError::OverBudget(e) => row(
                StatusCode::SERVICE_UNAVAILABLE,
                "over_capacity",
                Limit(e.limit()),
            ),
            ProxyError::BodyTimeout => row(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                Limit("body_read_timeout"),
            ),
            ProxyError::BodyTooLarge => {
                row(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", Nothing)
            }
            ProxyError::Auth(e) => row(auth_status(e), e.reason(), AuthFailure),
            ProxyError::Upstream(e) => upstream_reason(e),
        }
    }

    /// Counts the refusal where its row says and returns its reason code for the access line.
    pub(crate) fn count(&self, metrics: &Metrics, route: &str) -> &'static str {
        let reason = self.reason();
        match reason.counted {
            Counted::AuthFailure => metrics.auth_failure(reason.code),
            Counted::Limit(limit) => metrics.limit_hit(limit),
            Counted::Upstream => {
                metrics.upstream_error(route, reason.code);
                self.warn_upstream(route);
            }
            Counted::QuietUpstream => metrics.upstream_error(route, reason.code),
            Counted::Nothing => {}
        }
        reason.code
    }

    /// One warning line naming the endpoint (when there was one) and the cause chain in
    /// words: refused, DNS or TLS, not a `Debug` dump.
    fn warn_upstream(&self, route: &str) {
        let source = std::error::Error::source(self);
        let at = source.and_then(AtEndpoint::find);
        let upstream = at.map_or_else(|| "-".to_string(), |at| at.authority.to_string());
        let cause = match (at, source) {
            (Some(at), _) => crate::causes::chain(&*at.error),
            (None, Some(source)) => crate::causes::chain(source),
            (None, None) => "-".to_string(),
        };
        tracing::warn!(route, upstream, error = %self, cause, "upstream request failed");
    }

    pub(crate) fn into_response(self) -> Response<Body> {
        let reason = self.reason();
        let mut response = json(reason.status, reason.code, &self.message());
        if let Some((name, value)) = self.extra_header() {
            response.headers_mut().insert(name, value);
        }
        response
    }

    /// The body's `message`: fixed text, or the error's own, which never holds request data.
    fn message(&self) -> std::borrow::Cow<'static, str> {
        let fixed = match self {
            ProxyError::NoRoute => "no route matches this path",
            ProxyError::Ticket(TicketError::Unavailable) | ProxyError::StoreUnavailable => {
                "the shared store is unavailable; try again"
            }
            ProxyError::Revoked => "the token has been revoked",
            ProxyError::OriginNotAllowed => "this origin is not allowed here",
            ProxyError::RateLimited { .. } => "slow down",
            ProxyError::BadRequest(why) => why,
            ProxyError::MethodNotAllowed => "use POST",
            ProxyError::WebSocketVersion => "this server speaks WebSocket version 13",
            ProxyError::OverBudget(_) => "too many unauthenticated requests in flight, try again",
            ProxyError::BodyTimeout => "the request body did not arrive in time",
            ProxyError::BodyTooLarge => "the request body is larger than this endpoint takes",
            ProxyError::Upstream(e) => upstream_message(e),
            ProxyError::Ticket(_) | ProxyError::Path(_) | ProxyError::Auth(_) => {
                return self.to_string().into()
            }
        };
        fixed.into()
    }

    fn extra_header(&self) -> Option<(http::HeaderName, HeaderValue)> {
        let value = match self {
            ProxyError::Revoked
            | ProxyError::Ticket(TicketError::Invalid | TicketError::WrongRoute) => {
                (WWW_AUTHENTICATE, HeaderValue::from_static(INVALID_TOKEN))
            }
            ProxyError::RateLimited {
                retry_after_secs, ..
            } => (
                http::header::RETRY_AFTER,
                HeaderValue::from(*retry_after_secs),
            ),
            ProxyError::OverBudget(_) => (http::header::RETRY_AFTER, HeaderValue::from_static("1")),
            ProxyError::MethodNotAllowed => (
                http::header::ALLOW,
                HeaderValue::from_static("POST, OPTIONS"),
            ),
            // RFC 6455 §4.2.2: the version the server speaks.
            ProxyError::WebSocketVersion => (
                http::header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            ),
            ProxyError::Auth(e) => (
                WWW_AUTHENTICATE,
                HeaderValue::from_str(&challenge(e)?).ok()?,
            ),
            _ => return None,
        };
        Some(value)
    }
}

fn upstream_reason(e: &UpstreamError) -> Reason {
    use Counted::{Limit, Nothing, QuietUpstream, Upstream};
    match e {
        UpstreamError::Connect(_) | UpstreamError::Failed(_) | UpstreamError::BadSubprotocol => {
            row(StatusCode::BAD_GATEWAY, e.kind(), Upstream)
        }
        UpstreamError::Timeout(_) => row(StatusCode::GATEWAY_TIMEOUT, e.kind(), Upstream),
        UpstreamError::BadRequest(_) => row(StatusCode::INTERNAL_SERVER_ERROR, e.kind(), Upstream),
        UpstreamError::BodyTooLarge { .. } => row(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            Limit("max_body_bytes"),
        ),
        UpstreamError::BodyStalled => row(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            Limit("body_stall_timeout"),
        ),
        // The client's own doing, and nothing to alert on: the access line says it.
        UpstreamError::BodyBroken => row(StatusCode::BAD_REQUEST, e.kind(), Nothing),
        // The client's fault (a stale or edited SignalR id): counted, not logged.
        UpstreamError::NoConnection => row(StatusCode::NOT_FOUND, e.kind(), QuietUpstream),
        UpstreamError::HeadersTooLarge => row(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            e.kind(),
            Limit("upstream_max_header_list_size"),
        ),
        UpstreamError::Negotiate(_) => row(StatusCode::BAD_GATEWAY, e.kind(), Upstream),
    }
}

fn upstream_message(e: &UpstreamError) -> &'static str {
    match e {
        UpstreamError::Connect(_) | UpstreamError::Failed(_) => "the upstream could not be reached",
        UpstreamError::Timeout(_) => "the upstream did not answer in time",
        UpstreamError::BodyTooLarge { .. } => "the request body is larger than this route accepts",
        UpstreamError::BadSubprotocol => {
            "the upstream chose a subprotocol the client did not offer"
        }
        UpstreamError::BodyStalled => "the request body stopped arriving",
        UpstreamError::BodyBroken => "the request body broke off",
        UpstreamError::BadRequest(_) => "the request could not be forwarded",
        UpstreamError::NoConnection => "no connection with that id",
        UpstreamError::HeadersTooLarge => {
            "the request headers are larger than the upstream accepts"
        }
        UpstreamError::Negotiate(_) => "the upstream's negotiate answer could not be used",
    }
}

const REALM: &str = "Bearer realm=\"gatehouse\"";
const INVALID_TOKEN: &str = "Bearer realm=\"gatehouse\", error=\"invalid_token\"";

fn auth_status(e: &AuthError) -> StatusCode {
    match e {
        AuthError::KeysUnavailable | AuthError::IntrospectionUnavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        AuthError::Forbidden { .. } => StatusCode::FORBIDDEN,
        AuthError::Missing
        | AuthError::TooLarge
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
        | AuthError::BadDateClaim
        | AuthError::BadIdClaim => StatusCode::UNAUTHORIZED,
    }
}

/// The `WWW-Authenticate` challenge (RFC 6750 §3), if the status carries one.
fn challenge(e: &AuthError) -> Option<String> {
    match e {
        // RFC 6750 §3.1: a request without credentials gets a challenge without an error code.
        AuthError::Missing => Some(REALM.to_string()),
        AuthError::KeysUnavailable | AuthError::IntrospectionUnavailable => None,
        AuthError::Forbidden { required_scopes } if required_scopes.is_empty() => {
            Some(format!("{REALM}, error=\"insufficient_scope\""))
        }
        AuthError::Forbidden { required_scopes } => Some(format!(
            "{REALM}, error=\"insufficient_scope\", scope=\"{required_scopes}\""
        )),
        _ => Some(INVALID_TOKEN.to_string()),
    }
}

/// A short JSON error body: `{"error": code, "message": text}`, both fixed strings.
pub(crate) fn json(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    crate::body::json(
        status,
        &serde_json::json!({ "error": code, "message": message }),
    )
}

#[cfg(test)]
mod tests;
