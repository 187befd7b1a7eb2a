//! CORS for the endpoints gatehouse answers itself (tickets, sign-out). Single-page apps
//! call them cross-origin, so they answer preflights for the origins the routes allow. When
//! any route lists origins, a request whose `Origin` is not among them is refused (403);
//! with no list anywhere, CORS headers are simply not sent and the browser keeps the answer
//! from the page. The headers of every answer, errors included, come from `cors::finish`.

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::body::{empty, Body};
use crate::config::{origin_listed, Config, CorsAnswer, CorsConfig};
use crate::proxy::cors;
use crate::proxy::error::ProxyError;

pub(crate) struct EndpointCors {
    /// Union of the routes' `allowed_origins`.
    origins: Vec<String>,
    /// The endpoint reads a token from a cookie.
    cookies: bool,
    /// Always answered here: the endpoint is gatehouse's own.
    mode: CorsConfig,
}

impl EndpointCors {
    /// `cookies`: the endpoint reads a token from a cookie, which a browser attaches to a
    /// request from any site. A route's `"*"` (any page may call that route) then does not
    /// open the endpoint to every page: only origins a route names do, or, when none is
    /// named, the endpoint's own origin.
    pub(crate) fn new(all: &Config, cookies: bool) -> Self {
        let mut origins: Vec<String> = all
            .routes
            .iter()
            .flat_map(|r| r.allowed_origins.clone())
            .filter(|o| !(cookies && o == "*"))
            .collect();
        origins.sort();
        origins.dedup();
        Self {
            origins,
            cookies,
            mode: CorsConfig::Answer(CorsAnswer {
                methods: vec![Method::POST],
                headers: vec![header::AUTHORIZATION, header::CONTENT_TYPE],
                expose: Vec::new(),
                credentials: false,
                max_age: std::time::Duration::from_secs(600),
            }),
        }
    }

    /// The rules `Proxy::handle` applies to every answer of the endpoint.
    pub(crate) fn rules(&self) -> cors::Rules<'_> {
        cors::Rules {
            origins: &self.origins,
            mode: &self.mode,
        }
    }

    /// The answer to a preflight, `None` for a request the endpoint itself must answer;
    /// `Err` for an origin that is not allowed.
    pub(crate) fn screen<B>(
        &self,
        request: &Request<B>,
        https: bool,
    ) -> Result<Option<Response<Body>>, ProxyError> {
        let origin = self.origin(request, https)?;
        if request.method() != Method::OPTIONS {
            return Ok(None);
        }
        Ok(Some(match (origin, &self.mode) {
            (Some(origin), CorsConfig::Answer(answer)) => cors::answer_preflight(answer, origin),
            _ => {
                let mut r = Response::new(empty());
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
        }))
    }

    /// `Some(origin)` to echo in CORS headers, `None` for none; `Err` when it is not allowed.
    fn origin<B>(
        &self,
        request: &Request<B>,
        https: bool,
    ) -> Result<Option<HeaderValue>, ProxyError> {
        let Some(origin) = request.headers().get(header::ORIGIN) else {
            return Ok(None);
        };
        if self.origins.is_empty() {
            // No list: a cross-site page may call the endpoint but never read it, unless
            // its cookie would be the credential.
            let host = request.headers().get(header::HOST);
            if self.cookies && !cors::same_origin(origin, host, https) {
                return Err(ProxyError::OriginNotAllowed);
            }
            return Ok(None);
        }
        if origin_listed(&self.origins, origin) {
            Ok(Some(origin.clone()))
        } else {
            Err(ProxyError::OriginNotAllowed)
        }
    }
}
