//! RFC 7662 token introspection, for opaque (reference) tokens and JWTs from issuers we do
//! not hold keys for.
//!
//! The token is POSTed (`token=…&token_type_hint=access_token`) with the client's
//! credentials in HTTP Basic (RFC 6749 §2.3.1). `active: false` is a 401; an endpoint that is
//! down, slow or answering garbage is a 503 for those tokens, never a pass. Answers are
//! cached under the token's SHA-256 for at most `cache` and never past the token's `exp`;
//! inactive answers are cached too, so random tokens cannot turn gatehouse into an
//! amplifier against the IdP. The cache is bounded by `cache_entries`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use dashmap::DashMap;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full, Limited};
use sha2::{Digest, Sha256};

use crate::config::validate::IntrospectionConfig;
use crate::error::AuthError;
use crate::http_client::{self, Pooled};
use crate::secret::BearerToken;
use crate::validate::{unix_now, Claims};

const MAX_RESPONSE_BYTES: usize = 64 * 1024;

pub struct Introspector {
    endpoints: Vec<Endpoint>,
    client: Pooled<Full<Bytes>>,
    cache: DashMap<[u8; 32], Cached>,
}

struct Endpoint {
    config: IntrospectionConfig,
    authorization: HeaderValue,
}

#[derive(Clone)]
struct Cached {
    /// `None`: the endpoint said the token is not active.
    claims: Option<Arc<Claims>>,
    until: Instant,
}

/// What one endpoint said.
enum Answer {
    Active(Claims),
    Inactive,
}

impl Introspector {
    pub fn new(configs: &[IntrospectionConfig]) -> Result<Option<Self>, String> {
        if configs.is_empty() {
            return Ok(None);
        }
        let endpoints = configs
            .iter()
            .map(|c| {
                let encode =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let pair = format!(
                    "{}:{}",
                    encode(&c.client_id),
                    encode(c.client_secret.expose())
                );
                let basic = base64::engine::general_purpose::STANDARD.encode(pair);
                let authorization =
                    HeaderValue::from_str(&format!("Basic {basic}")).map_err(|_| {
                        format!(
                            "introspection {}: client credentials are not header-safe",
                            c.name
                        )
                    })?;
                Ok(Endpoint {
                    config: c.clone(),
                    authorization,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let client = http_client::build(Duration::from_secs(5), None)?;
        Ok(Some(Self {
            endpoints,
            client,
            cache: DashMap::new(),
        }))
    }

    /// The claims of an active token; tries the endpoints in order, the first active wins.
    pub async fn introspect(&self, token: &BearerToken) -> Result<Arc<Claims>, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
        if let Some(hit) = self
            .cache
            .get(&digest)
            .filter(|c| c.until > Instant::now())
            .map(|c| c.clone())
        {
            return hit.claims.ok_or(AuthError::Inactive);
        }
        let mut unavailable = false;
        for endpoint in &self.endpoints {
            match self.ask(endpoint, token).await {
                Ok(Answer::Active(claims)) => {
                    let claims = Arc::new(claims);
                    self.remember(digest, Some(claims.clone()), endpoint.config.cache);
                    return Ok(claims);
                }
                Ok(Answer::Inactive) => {}
                Err(()) => unavailable = true,
            }
        }
        if unavailable {
            return Err(AuthError::IntrospectionUnavailable);
        }
        let cache = self
            .endpoints
            .iter()
            .map(|e| e.config.cache)
            .min()
            .unwrap_or_default();
        self.remember(digest, None, cache);
        Err(AuthError::Inactive)
    }

    async fn ask(&self, endpoint: &Endpoint, token: &BearerToken) -> Result<Answer, ()> {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token.expose())
            .append_pair("token_type_hint", "access_token")
            .finish();
        let request = Request::post(endpoint.config.url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, endpoint.authorization.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| ())?;
        let name = &endpoint.config.name;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                tracing::warn!(introspection = %name, error = %e, "introspection endpoint unreachable");
            })?;
            if !response.status().is_success() {
                tracing::warn!(introspection = %name, status = %response.status(), "introspection endpoint failed");
                return Err(());
            }
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|_| ())?;
            Ok(body.to_bytes())
        };
        let bytes = tokio::time::timeout(endpoint.config.timeout, exchange)
            .await
            .map_err(|_| {
                tracing::warn!(introspection = %name, "introspection endpoint timed out");
            })??;
        parse(&bytes).ok_or_else(
            || tracing::warn!(introspection = %name, "introspection answer is not RFC 7662 JSON"),
        )
    }

    fn remember(&self, digest: [u8; 32], claims: Option<Arc<Claims>>, cache: Duration) {
        let now = unix_now();
        let exp = claims
            .as_ref()
            .and_then(|c| c.get("exp"))
            .and_then(serde_json::Value::as_u64);
        let lifetime = match exp {
            Some(exp) => cache.min(Duration::from_secs(exp.saturating_sub(now))),
            None => cache,
        };
        if lifetime.is_zero() {
            return;
        }
        let max = self
            .endpoints
            .iter()
            .map(|e| e.config.cache_entries)
            .max()
            .unwrap_or(0);
        if self.cache.len() >= max {
            let now = Instant::now();
            self.cache.retain(|_, c| c.until > now);
            if self.cache.len() >= max {
                self.cache.clear();
            }
        }
        if max > 0 {
            self.cache.insert(
                digest,
                Cached {
                    claims,
                    until: Instant::now() + lifetime,
                },
            );
        }
    }
}

/// An RFC 7662 answer: `active` is required; an active token past `exp` or before `nbf`
/// counts as inactive whatever the endpoint says.
fn parse(bytes: &[u8]) -> Option<Answer> {
    let mut claims: Claims = serde_json::from_slice(bytes).ok()?;
    let active = claims.remove("active")?.as_bool()?;
    let now = unix_now();
    let expired = claims
        .get("exp")
        .and_then(serde_json::Value::as_u64)
        .is_some_and(|exp| exp <= now);
    let early = claims
        .get("nbf")
        .and_then(serde_json::Value::as_u64)
        .is_some_and(|nbf| nbf > now);
    Some(if active && !expired && !early {
        Answer::Active(claims)
    } else {
        Answer::Inactive
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_per_rfc_7662() {
        let later = unix_now() + 60;
        let active = format!(r#"{{"active":true,"sub":"a","scope":"x y","exp":{later}}}"#);
        assert!(
            matches!(parse(active.as_bytes()), Some(Answer::Active(c)) if c["sub"] == "a" && !c.contains_key("active"))
        );
        assert!(matches!(
            parse(br#"{"active":false}"#),
            Some(Answer::Inactive)
        ));
        assert!(matches!(
            parse(br#"{"active":true,"exp":1}"#),
            Some(Answer::Inactive)
        ));
        assert!(parse(br#"{"sub":"a"}"#).is_none(), "active is required");
        assert!(parse(br#"{"active":"yes"}"#).is_none());
        assert!(parse(b"<html>").is_none());
    }
}
