//! The response body type every path returns, and its constructors.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// A streamed body: an upstream's `Incoming` passes through without buffering.
pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

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
