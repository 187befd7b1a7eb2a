//! The response body type every path returns, and its constructors.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// A streamed body: an upstream's `Incoming` passes through without buffering.
pub(crate) type Body = BoxBody<Bytes, BodyError>;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a [`Body`] failed. An enum, not a boxed `dyn Error`: a `dyn` type inside the boxed
/// body's type trips the compiler's `Send` inference for the futures that hold one.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The upstream's body (or connection) failed.
    #[error(transparent)]
    Upstream(#[from] hyper::Error),
    /// gatehouse cut the stream because its token expired or was revoked
    /// (`proxy/token_bound.rs`); the reason code.
    #[error("response stream cut: {0}")]
    Cut(&'static str),
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A JSON response with `status`.
pub(crate) fn json(status: http::StatusCode, value: &serde_json::Value) -> http::Response<Body> {
    let mut response = http::Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
