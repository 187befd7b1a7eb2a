//! A CORS preflight on a route (see `cors.rs` for what counts as one): answered here for a
//! listed origin when the route says `cors = "answer"`, or passed upstream anonymous and
//! stripped of every credential the route knows (`cors = "pass"`), never authenticated.

use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::auth::policy;
use crate::body::Body;
use crate::config::{origin_listed, CorsConfig};
use crate::proxy::access_log::AccessLine;
use crate::proxy::cors::answer_preflight;
use crate::proxy::error::ProxyError;
use crate::proxy::service::{Caller, Conn, Proxy, Route};

impl Proxy {
    /// A preflight on `route`: answered here, or passed upstream without credentials.
    pub(crate) async fn preflight(
        &self,
        request: Request<Incoming>,
        route: &Route,
        context: (&Conn, &Caller, &HeaderValue),
        line: &mut AccessLine,
    ) -> Result<Response<Body>, ProxyError> {
        let config = &route.config;
        let origin = request.headers().get(header::ORIGIN).cloned();
        let listed = origin
            .as_ref()
            .is_some_and(|o| origin_listed(&config.allowed_origins, o));
        let result = match (&config.cors, origin) {
            (CorsConfig::Answer(answer), Some(origin)) if listed => {
                Ok(("answered", answer_preflight(answer, origin)))
            }
            (CorsConfig::Pass, _) if listed || config.allowed_origins.is_empty() => self
                .pass_preflight(request, route, context, line)
                .await
                .map(|r| ("passed", r)),
            _ => Err(ProxyError::OriginNotAllowed),
        };
        let outcome = match &result {
            Ok((outcome, _)) => outcome,
            Err(ProxyError::OriginNotAllowed) => "refused",
            Err(_) => "upstream_failed",
        };
        self.metrics.cors_preflight(&route.labels.name, outcome);
        result.map(|(_, response)| response)
    }

    async fn pass_preflight(
        &self,
        request: Request<Incoming>,
        route: &Route,
        context: (&Conn, &Caller, &HeaderValue),
        line: &mut AccessLine,
    ) -> Result<Response<Body>, ProxyError> {
        let (mut parts, body) = request.into_parts();
        parts.headers.remove(header::COOKIE);
        // Anonymous and without a credential: the rewrite removes Authorization, token
        // cookies, token and ticket parameters and `bearer.` subprotocols, and sets no
        // identity headers (it strips the client's).
        let mut permitted = policy::preflight(parts);
        self.rewrite(route, &mut permitted, context, None)?;
        let request = permitted.map(|parts| Request::from_parts(parts, body));
        line.asking_upstream();
        let answer = std::pin::pin!(route.upstream.forward(request)).await;
        let (response, _) = super::pipeline::answered(answer, line)?;
        Ok(response.map(BodyExt::boxed))
    }
}
