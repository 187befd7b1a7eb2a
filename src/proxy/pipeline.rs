//! [`Proxy::pipeline`]: one routed request as one `?` chain, from the token to the
//! upstream's answer (see `service.rs` for the steps and for `handle` around it).

use std::sync::Arc;
use std::time::Instant;

use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::auth::claims::Claims;
use crate::auth::policy;
use crate::auth::token::{self, Origin};
use crate::body::Body;
use crate::config::{AuthMode, TokenSource};
use crate::proxy::access_log::AccessLine;
use crate::proxy::error::ProxyError;
use crate::proxy::service::{Conn, ConnHold, Credential, Proxy, Route};
use crate::secret::BearerToken;
use crate::upstream::http::Rewrite;
use crate::websocket;

impl Proxy {
    pub(super) async fn pipeline(
        self: &Arc<Self>,
        mut request: Request<Incoming>,
        route: &Arc<Route>,
        conn: Conn,
        request_id: &HeaderValue,
        line: &mut AccessLine,
    ) -> Result<Response<Body>, ProxyError> {
        let upgrade = route.config.websocket && websocket::is_upgrade_request(&request);
        if upgrade && !websocket::origin_allowed(request.headers(), &route.config.allowed_origins) {
            self.metrics.upgrade(&route.name, "origin_not_allowed");
            return Err(ProxyError::OriginNotAllowed);
        }
        // Taken before the request is moved upstream: it resolves once we answer 101.
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let slot = request.extensions_mut().remove::<ConnHold>();
        let (mut parts, body) = request.into_parts();
        let credential = self.counted(upgrade, route, self.authenticate(&parts, route).await)?;
        line.subject = credential.as_ref().and_then(|c| self.subject(&c.claims));
        let wants_first_message = route.config.tokens.last() == Some(&TokenSource::FirstMessage);
        let client_upgrade = match client_upgrade {
            Some(pending) if credential.is_none() && wants_first_message => {
                return self.first_message(route, parts, body, (conn, slot), pending, request_id);
            }
            other => other,
        };
        let claims = credential.as_ref().map(|c| c.claims.clone());
        let access =
            policy::authorize(&route.config, &self.claims, claims).map_err(ProxyError::from);
        let access = self.counted(upgrade, route, access)?;
        self.rewrite(
            route,
            &mut parts,
            conn,
            request_id,
            (credential.as_ref(), &access),
        )?;
        let mut protocols = Vec::new();
        if upgrade {
            protocols = websocket::offered_protocols(&parts.headers);
            websocket::prepare_upstream_request(&mut parts.headers, &protocols);
        }
        let sent = Instant::now();
        let mut response = route
            .upstream
            .forward(Request::from_parts(parts, body))
            .await?;
        line.upstream_time = Some(sent.elapsed());
        if let (Some(client_upgrade), true) = (
            client_upgrade,
            response.status() == StatusCode::SWITCHING_PROTOCOLS,
        ) {
            self.check_chosen_protocol(route, response.headers(), &protocols)?;
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            websocket::prepare_client_response(response.headers_mut());
            let claims = credential.as_ref().map(|c| c.claims.clone());
            let sides = (client_upgrade, upstream_upgrade, slot);
            self.spawn_relay(route, sides, claims, request_id);
        } else if upgrade {
            self.metrics.upgrade(&route.name, "upstream_refused");
        }
        Ok(response.map(BodyExt::boxed))
    }

    /// Counts a refused upgrade in the upgrade metric; passes the result through.
    fn counted<T>(
        &self,
        upgrade: bool,
        route: &Route,
        result: Result<T, ProxyError>,
    ) -> Result<T, ProxyError> {
        if upgrade && result.is_err() {
            self.metrics.upgrade(&route.name, "refused");
        }
        result
    }

    /// Finds the caller's token or ticket and turns it into a credential.
    pub(crate) async fn authenticate(
        &self,
        parts: &Parts,
        route: &Route,
    ) -> Result<Option<Credential>, ProxyError> {
        if route.config.auth == AuthMode::None {
            return Ok(None);
        }
        let Some(found) = token::extract(parts, &route.config.tokens, self.max_token_bytes)? else {
            return Ok(None);
        };
        if found.origin == Origin::Ticket {
            let desk = self.tickets.as_ref().ok_or(ProxyError::NoRoute)?;
            let grant = desk
                .redeem(&found.token, &route.config.path, &self.metrics)
                .await?;
            self.revocations.check(&grant.claims)?;
            return Ok(Some(Credential {
                claims: grant.claims,
                token: grant.token,
            }));
        }
        let claims = self.validated(&found.token).await?;
        Ok(Some(Credential {
            claims,
            token: Some(found.token),
        }))
    }

    /// A token's claims, once its signature, claims and revocation status are checked.
    pub(crate) async fn validated(&self, token: &BearerToken) -> Result<Arc<Claims>, ProxyError> {
        let claims = self.validator.validate(token).await?;
        self.revocations.check(&claims)?;
        Ok(claims)
    }

    pub(crate) fn rewrite(
        &self,
        route: &Route,
        parts: &mut Parts,
        conn: Conn,
        request_id: &HeaderValue,
        (credential, access): (Option<&Credential>, &policy::Access),
    ) -> Result<(), ProxyError> {
        let rewrite = Rewrite {
            client_ip: conn.peer.ip(),
            https: conn.https,
            request_id,
            token: credential.and_then(|c| c.token.as_ref()),
            identity: &self.identity_headers,
            access,
        };
        Ok(route
            .upstream
            .rewrite(parts, &route.config, &route.redactor, rewrite)?)
    }

    pub(crate) fn subject(&self, claims: &Claims) -> Option<String> {
        self.claims.subject_of(claims).map(String::from)
    }
}
