//! CORS for the endpoints gatehouse answers itself (tickets, logout): single-page apps call
//! them cross-origin, so they answer preflights for the origins the routes allow. When any
//! route lists origins, a request whose `Origin` is not among them is refused (403); with no
//! list anywhere, CORS headers are simply not sent and the browser keeps the answer from
//! the page.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::body::{empty, Body};
use crate::config::Config;
use crate::proxy::error::ProxyError;

/// The union of the routes' `allowed_origins`.
pub(crate) struct Origins(Vec<String>);

impl Origins {
    pub(crate) fn of(config: &Config) -> Self {
        let mut origins: Vec<String> = config
            .routes
            .iter()
            .flat_map(|r| r.allowed_origins.clone())
            .collect();
        origins.sort();
        origins.dedup();
        Self(origins)
    }

    /// `Some(origin)` to echo in CORS headers, `None` for none; `Err` when it is not allowed.
    pub(crate) fn check<B>(&self, request: &Request<B>) -> Result<Option<HeaderValue>, ProxyError> {
        let Some(origin) = request.headers().get(header::ORIGIN) else {
            return Ok(None);
        };
        if self.0.is_empty() {
            return Ok(None);
        }
        let allowed = self
            .0
            .iter()
            .any(|o| o == "*" || o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()));
        if allowed {
            Ok(Some(origin.clone()))
        } else {
            Err(ProxyError::OriginNotAllowed)
        }
    }
}

/// Echoes an allowed origin; `Vary: Origin` so no cache hands it to another origin.
pub(crate) fn allow(response: &mut Response<Body>, origin: Option<HeaderValue>) {
    if let Some(origin) = origin {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The answer to an `OPTIONS` preflight: `POST` with a bearer and a JSON body.
pub(crate) fn preflight() -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r
}
