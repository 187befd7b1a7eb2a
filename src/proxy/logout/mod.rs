//! The caller's own sign-out, answered before routing: `POST {endpoint}` with a valid token
//! revokes that token (its `jti`, until its `exp`), and with `{"everywhere": true}` every
//! token of its subject issued up to the end of this second. `204` on success, `Cache-Control: no-store`.
//!
//! The token comes from the `Authorization` header only: a browser attaches cookies to a
//! cross-site form post by itself, so a cookie source would let any page sign a user out.
//! The rest is the ticket endpoint's shape: CORS as in `endpoint_cors`, no token ->
//! 401 before anything is counted, then validation (revocation included, so a store outage
//! is 503 under `on_store_error = "deny"`), then the per-caller rate limit, then a small
//! body held against the pre-authentication budget. The revocation goes through the same
//! store, merge and channel as the admin API's, so it only tightens, repeating it changes
//! nothing, and open WebSockets of the revoked tokens close with 4401 on every replica.

mod endpoint;

use serde::Deserialize;

use crate::auth::claims::{unix_now, Claims};
use crate::auth::numeric_date;
use crate::auth::revocation::{Revocations, Revoked, MAX_BEFORE};
use crate::config::{Config, LogoutConfig};
use crate::metrics::Metrics;
use crate::proxy::access_log::Labels;
use crate::proxy::endpoint_cors::EndpointCors;
use crate::proxy::error::ProxyError;

/// A body larger than this is not a sign-out request.
const MAX_BODY_BYTES: usize = 256;

pub(crate) struct LogoutDesk {
    pub config: LogoutConfig,
    pub(crate) cors: EndpointCors,
    /// The longest `leeway` of any issuer: a token is accepted that long past its `exp`.
    leeway_secs: u64,
    /// A `jti` or subject is unique only within one issuer, so sign-out needs a single one.
    single_issuer: bool,
    pub(crate) labels: Labels,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogoutRequest {
    #[serde(default)]
    everywhere: bool,
}

impl LogoutDesk {
    pub(crate) fn new(config: &LogoutConfig, all: &Config, metrics: &Metrics) -> Self {
        Self {
            config: config.clone(),
            // The token comes from `Authorization` only.
            cors: EndpointCors::new(all, false),
            leeway_secs: all
                .issuers
                .iter()
                .map(|i| i.leeway.as_secs())
                .max()
                .unwrap_or(0),
            single_issuer: all.issuers.len() + all.introspections.len() == 1,
            labels: Labels::new(&config.endpoint, all.redactor(), metrics),
        }
    }

    /// What `claims` asks to revoke; `Err` when the token cannot be revoked that way.
    fn entries(
        &self,
        claims: &Claims,
        everywhere: bool,
        revocations: &Revocations,
    ) -> Result<Vec<Revoked>, ProxyError> {
        // Revocations name a `jti` or a subject, not an issuer, and each is unique only
        // within its issuer: with two, a caller could sign out another issuer's token that
        // shares its `jti` (an HMAC or partner issuer lets it choose one) or its subject.
        // Validation refuses such a config; this holds for a `Config` built without it.
        if !self.single_issuer {
            return Err(ProxyError::BadRequest(
                "sign-out needs a single issuer: a jti or subject of one issuer may name another's token",
            ));
        }
        let text = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
        let now = unix_now();
        // A token without `exp` (introspection may say none) is held for the longest time
        // the store can keep anything.
        let until = numeric_date::get(claims, "exp").map_or(MAX_BEFORE, |exp| {
            exp.saturating_add(self.leeway_secs).min(MAX_BEFORE)
        });
        let own = text("jti")
            .filter(|j| !j.is_empty())
            .map(|jti| Revoked::Token {
                jti: jti.to_string(),
                expires: until.max(now + 1),
            });
        if !everywhere {
            return own.map(|e| vec![e]).ok_or(ProxyError::BadRequest(
                "this token has no jti; send {\"everywhere\": true} to sign out every token of its subject",
            ));
        }
        let sub = text("sub")
            .filter(|s| !s.is_empty())
            .ok_or(ProxyError::BadRequest("this token names no subject"))?;
        // Every token issued up to the end of this second (`iat` counts whole seconds, so a
        // token refreshed a moment ago falls under it), and the presenting token itself even
        // when the IdP's clock runs ahead of ours: validation refuses an `iat` later than
        // now plus the issuer's `leeway`, so the clamp never leaves it out.
        let iat = numeric_date::get(claims, "iat");
        let before = iat.map_or(now + 1, |iat| {
            iat.saturating_add(1)
                .clamp(now + 1, now.saturating_add(1 + self.leeway_secs))
        });
        // Kept `revocation.retain` past `before`, as the admin API keeps it: the endpoint
        // cannot know how long the subject's other tokens live.
        let subject = revocations
            .entry(None, Some(sub.to_string()), Some(before))
            .ok_or(ProxyError::BadRequest("this token names no subject"))?;
        Ok(own.into_iter().chain(Some(subject)).collect())
    }
}

fn parse_request(body: &[u8]) -> Result<LogoutRequest, ProxyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(LogoutRequest::default());
    }
    serde_json::from_slice(body)
        .map_err(|_| ProxyError::BadRequest("expected {\"everywhere\": true} or no body"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_out_requests_parse_strictly() {
        assert!(!parse_request(b"").unwrap().everywhere);
        assert!(!parse_request(b"{}").unwrap().everywhere);
        assert!(
            parse_request(br#"{"everywhere": true}"#)
                .unwrap()
                .everywhere
        );
        assert!(parse_request(br#"{"everywhere": "yes"}"#).is_err());
        assert!(parse_request(br#"{"everywher": true}"#).is_err());
        assert!(parse_request(b"true").is_err());
    }
}
