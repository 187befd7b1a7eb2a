//! What the ticket desk and the sign-out desk do before they act, in this order:
//! authenticate the caller by token, count them against the desk's per-minute limit, then
//! read the small body under the pre-authentication budget. One sequence, so neither desk
//! reads a body for a caller it has not validated and counted.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use crate::auth::claims::Claims;
use crate::auth::error::AuthError;
use crate::auth::key_board::KeyRef;
use crate::claim_path::ClaimPath;
use crate::config::TokenSource;
use crate::proxy::access_log::AccessLine;
use crate::proxy::authenticate::Credential;
use crate::proxy::error::ProxyError;
use crate::proxy::rate_limit::RateLimiter;
use crate::proxy::service::Proxy;
use crate::secret::BearerToken;

/// A desk's per-caller limit.
pub(crate) struct DeskLimit<'a> {
    pub limiter: &'a RateLimiter<[u8; 32]>,
    pub per_minute: u32,
    /// The refusal's reason code (`ticket_rate`, `logout_rate`).
    pub name: &'static str,
}

/// A desk's request body: at most `max` bytes; `refusal` is the 400's text otherwise.
pub(crate) struct DeskBody {
    pub max: usize,
    pub refusal: &'static str,
}

/// A validated, counted caller and their body.
pub(crate) struct DeskCall {
    pub claims: Arc<Claims>,
    pub token: BearerToken,
    pub key: Option<Arc<KeyRef>>,
    pub body: Bytes,
}

impl Proxy {
    pub(crate) async fn desk_call(
        &self,
        request: Request<Incoming>,
        sources: &[TokenSource],
        limit: DeskLimit<'_>,
        wanted: DeskBody,
        line: &mut AccessLine,
    ) -> Result<DeskCall, ProxyError> {
        let (parts, body) = request.into_parts();
        let Credential { claims, token, key } = self.auth.required(&parts, sources).await?;
        let token = token.ok_or(AuthError::Missing)?;
        line.subject = self.subject(&claims);
        let who = caller(&claims, &token, &self.claims.subject);
        limit
            .limiter
            .check(who, limit.per_minute)
            .map_err(|retry_after_secs| ProxyError::RateLimited {
                retry_after_secs,
                limit: limit.name,
            })?;
        // Held against the pre-authentication budget and cut after limits.body_read_timeout.
        let body = self
            .pre_auth
            .read_body(body, wanted.max)
            .await
            .map_err(|e| ProxyError::from_body(e, wanted.refusal))?;
        Ok(DeskCall {
            claims,
            token,
            key,
            body,
        })
    }
}

/// Whose count a request adds to: the issuer and subject, or the token itself when it
/// names no subject. Hashed, so every entry is the same small size.
fn caller(claims: &Claims, token: &BearerToken, subject_claim: &ClaimPath) -> [u8; 32] {
    let text = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
    let mut hash = Sha256::new();
    match subject_claim.string(claims) {
        Some(subject) => {
            hash.update(b"subject\0");
            hash.update(text("iss").unwrap_or_default());
            hash.update(b"\0");
            hash.update(subject);
        }
        None => {
            hash.update(b"token\0");
            hash.update(token.expose());
        }
    }
    hash.finalize().into()
}
