//! The sign-out endpoint as the proxy answers it: CORS, then `POST` revokes what the
//! caller's token asks for (see the module above for the rules).

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{parse_request, LogoutDesk, MAX_BODY_BYTES};
use crate::auth::error::AuthError;
use crate::body::{empty, Body};
use crate::config::TokenSource;
use crate::proxy::access_log::AccessLine;
use crate::proxy::authenticate::Credential;
use crate::proxy::error::ProxyError;
use crate::proxy::service::Proxy;
use crate::proxy::ticket_desk::caller;

impl Proxy {
    pub(crate) async fn logout_endpoint(
        &self,
        desk: &LogoutDesk,
        request: Request<Incoming>,
        line: &mut AccessLine,
    ) -> Result<Response<Body>, ProxyError> {
        if let Some(preflight) = desk.cors.screen(&request)? {
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
        let (parts, body) = request.into_parts();
        let Credential { claims, token } =
            self.auth.required(&parts, &[TokenSource::Header]).await?;
        let token = token.ok_or(AuthError::Missing)?;
        line.subject = self.subject(&claims);
        self.rate_limits
            .logouts
            .check(
                caller(&claims, &token, &self.claims.subject),
                desk.config.rate_limit_per_minute,
            )
            .map_err(|retry_after_secs| ProxyError::RateLimited {
                retry_after_secs,
                limit: "logout_rate",
            })?;
        let body = self
            .pre_auth
            .read_body(body, MAX_BODY_BYTES)
            .await
            .map_err(|e| ProxyError::from_body(e, "the body is not a sign-out request"))?;
        let wanted = parse_request(&body)?;
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
