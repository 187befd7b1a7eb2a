//! The sign-out endpoint as the proxy answers it: CORS, then `POST` revokes what the
//! caller's token asks for (see the module above for the rules).

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{parse_request, LogoutDesk, MAX_BODY_BYTES};
use crate::body::{empty, Body};
use crate::config::TokenSource;
use crate::proxy::access_log::AccessLine;
use crate::proxy::desk_call::{DeskBody, DeskLimit};
use crate::proxy::error::ProxyError;
use crate::proxy::service::Proxy;

impl Proxy {
    pub(crate) async fn logout_endpoint(
        &self,
        desk: &LogoutDesk,
        (request, https): (Request<Incoming>, bool),
        line: &mut AccessLine,
    ) -> Result<Response<Body>, ProxyError> {
        if let Some(preflight) = desk.cors.screen(&request, https)? {
            return Ok(preflight);
        }
        match *request.method() {
            Method::POST => self.sign_out(desk, request, line).await,
            _ => Err(ProxyError::MethodNotAllowed),
        }
    }

    async fn sign_out(
        &self,
        desk: &LogoutDesk,
        request: Request<Incoming>,
        line: &mut AccessLine,
    ) -> Result<Response<Body>, ProxyError> {
        let limit = DeskLimit {
            limiter: &self.rate_limits.logouts,
            per_minute: desk.config.rate_limit_per_minute,
            name: "logout_rate",
        };
        let wanted = DeskBody {
            max: MAX_BODY_BYTES,
            refusal: "the body is not a sign-out request",
        };
        let call = (self.desk_call(request, &[TokenSource::Header], limit, wanted, line)).await?;
        let (claims, wanted) = (call.claims, parse_request(&call.body)?);
        let revocations = self.auth.revocations();
        for entry in desk.entries(&claims, wanted.everywhere, revocations)? {
            revocations.revoke(entry).await.inspect_err(|_| {
                self.metrics.store_error("revocation");
            })?;
        }
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(response)
    }
}
