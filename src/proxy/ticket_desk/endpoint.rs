//! The ticket endpoint as the proxy answers it: CORS, then `POST` issues a ticket to a
//! caller whose token validates (see the module above for the rules).

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{parse_request, TicketDesk, MAX_BODY_BYTES};
use crate::auth::claims::Claims;
use crate::auth::error::AuthError;
use crate::auth::policy;
use crate::body::Body;
use crate::proxy::access_log::AccessLine;
use crate::proxy::desk_call::{DeskBody, DeskCall, DeskLimit};
use crate::proxy::error::ProxyError;
use crate::proxy::service::Proxy;
use crate::tickets::{Grant, Issued};

impl Proxy {
    pub(crate) async fn ticket_endpoint(
        &self,
        desk: &TicketDesk,
        (request, https): (Request<Incoming>, bool),
        line: &mut AccessLine,
    ) -> Result<Response<Body>, ProxyError> {
        if let Some(preflight) = desk.cors.screen(&request, https)? {
            return Ok(preflight);
        }
        match *request.method() {
            Method::POST => self.issue(desk, request, line).await,
            _ => Err(ProxyError::MethodNotAllowed),
        }
    }

    async fn issue(
        &self,
        desk: &TicketDesk,
        request: Request<Incoming>,
        line: &mut AccessLine,
    ) -> Result<Response<Body>, ProxyError> {
        let limit = DeskLimit {
            limiter: &self.rate_limits.tickets,
            per_minute: desk.config.rate_limit_per_minute,
            name: "ticket_rate",
        };
        let wanted = DeskBody {
            max: MAX_BODY_BYTES,
            refusal: "the body is not a ticket request",
        };
        let DeskCall {
            claims,
            token,
            key,
            body,
        } = (self.desk_call(request, &desk.config.tokens, limit, wanted, line)).await?;
        let wanted = parse_request(&body)?;
        let route = self.bound_route(wanted.route.as_deref(), &claims)?;
        let keep_token = match &route {
            Some(path) => desk.bearer_routes.contains(path),
            None => !desk.bearer_routes.is_empty(),
        };
        // A token without `exp` (introspection may say none) gives a ticket its full ttl.
        let exp = crate::auth::numeric_date::get(&claims, "exp").unwrap_or(u64::MAX);
        let lifetime = crate::tickets::lifetime(desk.store.ttl(), exp).ok_or(AuthError::Expired)?;
        let grant = Grant {
            claims,
            token: keep_token.then_some(token),
            route,
            key,
        };
        let issued = desk
            .store
            .issue(grant, lifetime)
            .await
            .inspect_err(|e| self.metrics.ticket(e.reason()))?;
        self.metrics.ticket("issued");
        Ok(issued_response(&issued))
    }

    /// The route a ticket is bound to, when the caller named one: it must exist and its
    /// policy must admit the caller now, so a ticket that could not be used is not issued.
    /// The path is read as a request's would be (`/ws/../admin` is `/admin`), so the
    /// ticket is bound to the route a request for it would reach.
    fn bound_route(
        &self,
        path: Option<&str>,
        claims: &Arc<Claims>,
    ) -> Result<Option<String>, ProxyError> {
        let Some(path) = path else {
            return Ok(None);
        };
        // A path, not a target: `/admin?/../ws` would bind to `/ws` by its text but reach
        // `/admin` as a request.
        let ambiguous = ProxyError::BadRequest("the route path is ambiguous");
        if path.contains(['?', '#']) {
            return Err(ambiguous);
        }
        let path = crate::canonical::path(path, &self.paths).map_err(|_| ambiguous)?;
        let route = self
            .routes
            .find(&path)
            .ok_or(ProxyError::BadRequest("no route matches that path"))?;
        policy::authorize(&route.config, &self.claims, Some(claims.clone()), ())?;
        Ok(Some(route.config.path.clone()))
    }
}

/// `201 {"ticket","expires_at","expires_in"}`, never cached.
fn issued_response(issued: &Issued) -> Response<Body> {
    let expires_at = time::OffsetDateTime::from(issued.expires_at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let body = serde_json::json!({
        "ticket": issued.ticket,
        "expires_at": expires_at,
        "expires_in": issued.expires_in.as_secs(),
    });
    let mut response = crate::body::json(StatusCode::CREATED, &body);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
