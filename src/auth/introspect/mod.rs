//! RFC 7662 token introspection, for opaque (reference) tokens and JWTs from issuers we do
//! not hold keys for.
//!
//! The token is POSTed (`token=…&token_type_hint=access_token`) with the client's
//! credentials in HTTP Basic (RFC 6749 §2.3.1). `active: false` is a 401; an endpoint that is
//! down, slow or answering garbage (including an `exp` that is no NumericDate or lies beyond
//! any token's life, see [`answer`]) is a 503 for those tokens, never a pass.
//!
//! What a token can cost the IdP is bounded three ways. Answers are cached under the token's
//! SHA-256 ([`cache`]): active ones for at most `cache` and never past `exp`, inactive ones in
//! a separate map that made-up tokens cannot use to push out real callers. Concurrent
//! requests with the same uncached token share one call (single flight). And each endpoint
//! gets at most `max_calls_per_second` calls ([`budget`]); past it a miss is a 503 — the IdP
//! was not asked, so the token is not blamed with a 401 its owner would act on.

mod answer;
mod budget;
mod cache;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use dashmap::DashMap;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full, Limited};
use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;

use self::answer::Answer;
use self::budget::CallBudget;
use self::cache::{Caches, Digest, Hit};
use crate::auth::claims::{unix_now, Claims};
use crate::auth::error::AuthError;
use crate::config::validate::IntrospectionConfig;
use crate::http_client::{self, Pooled};
use crate::metrics::{IdpEndpoint, Metrics};
use crate::secret::BearerToken;

const MAX_RESPONSE_BYTES: usize = 64 * 1024;

pub struct Introspector {
    endpoints: Vec<Endpoint>,
    client: Pooled<Full<Bytes>>,
    caches: Caches,
    /// One shared lookup per uncached token being introspected right now.
    flights: DashMap<Digest, Arc<OnceCell<Outcome>>>,
    /// Unix second of the last "budget spent" warning: one line a second at most.
    last_budget_warning: AtomicU64,
    metrics: Arc<Metrics>,
}

struct Endpoint {
    config: IntrospectionConfig,
    authorization: HeaderValue,
    budget: CallBudget,
}

/// What one lookup decided, shared by every request in its flight.
#[derive(Clone)]
enum Outcome {
    Found(Hit),
    Unavailable,
}

/// Why one endpoint gave no answer.
enum NoAnswer {
    /// Down, slow, refusing us or answering garbage (already logged).
    Failed,
    /// Its call budget is spent for now: it was not asked.
    OverBudget,
}

impl Introspector {
    pub fn new(
        configs: &[IntrospectionConfig],
        metrics: Arc<Metrics>,
    ) -> Result<Option<Self>, String> {
        if configs.is_empty() {
            return Ok(None);
        }
        let endpoints = configs
            .iter()
            .map(Endpoint::new)
            .collect::<Result<Vec<_>, String>>()?;
        let client = http_client::build(Duration::from_secs(5), None)?;
        let largest =
            |f: fn(&IntrospectionConfig) -> usize| configs.iter().map(f).max().unwrap_or(0);
        Ok(Some(Self {
            caches: Caches::new(
                largest(|c| c.cache_entries),
                largest(|c| c.negative_cache_entries),
            ),
            endpoints,
            client,
            flights: DashMap::new(),
            last_budget_warning: AtomicU64::new(0),
            metrics,
        }))
    }

    /// The claims of an active token; tries the endpoints in order, the first active wins.
    pub async fn introspect(&self, token: &BearerToken) -> Result<Arc<Claims>, AuthError> {
        let digest: Digest = Sha256::digest(token.expose().as_bytes()).into();
        let outcome = match self.caches.get(&digest) {
            Some(hit) => Outcome::Found(hit),
            None => self.in_flight(digest, token).await,
        };
        match outcome {
            Outcome::Found(Some(claims)) => Ok(claims),
            Outcome::Found(None) => Err(AuthError::Inactive),
            Outcome::Unavailable => Err(AuthError::IntrospectionUnavailable),
        }
    }

    /// Joins the lookup already running for this token, or starts it. A caller that goes
    /// away mid-lookup hands it to the next waiter (the cell runs another's init), and the
    /// flight is forgotten once answered: the caches hold the answer from then on.
    async fn in_flight(&self, digest: Digest, token: &BearerToken) -> Outcome {
        // The guard holds the only handle this caller has on the flight, so when it goes
        // (answered or cancelled) the count it sees is everyone else's.
        let leave = Leave {
            flights: &self.flights,
            digest,
            flight: Some(self.flights.entry(digest).or_default().clone()),
        };
        let Some(flight) = leave.flight.as_deref() else {
            return Outcome::Unavailable; // just set above; fail closed all the same
        };
        flight
            .get_or_init(|| self.lookup(digest, token))
            .await
            .clone()
    }

    async fn lookup(&self, digest: Digest, token: &BearerToken) -> Outcome {
        // A flight that ended between our cache look and joining may have answered already.
        if let Some(hit) = self.caches.get(&digest) {
            return Outcome::Found(hit);
        }
        let mut unavailable = false;
        for endpoint in &self.endpoints {
            match self.ask(endpoint, token).await {
                // Active, but issued for another resource server or by another issuer than
                // the endpoint speaks for: not a token for us.
                Ok(Answer::Active(mut claims)) => {
                    let ours = answer::for_audience(&claims, &endpoint.config.audiences)
                        && answer::bind_issuer(&mut claims, endpoint.config.issuer.as_deref());
                    if !ours {
                        continue;
                    }
                    let claims = Arc::new(claims);
                    self.caches
                        .remember_active(digest, claims.clone(), endpoint.config.cache);
                    return Outcome::Found(Some(claims));
                }
                Ok(Answer::Inactive) => {}
                Err(NoAnswer::Failed) => unavailable = true,
                Err(NoAnswer::OverBudget) => {
                    self.warn_over_budget(&endpoint.config.name);
                    unavailable = true;
                }
            }
        }
        if unavailable {
            return Outcome::Unavailable;
        }
        let ttl = self
            .endpoints
            .iter()
            .map(|e| e.config.cache)
            .min()
            .unwrap_or_default();
        self.caches.remember_inactive(digest, ttl);
        Outcome::Found(None)
    }

    fn warn_over_budget(&self, name: &str) {
        let now = unix_now();
        let last = self.last_budget_warning.swap(now, Ordering::Relaxed);
        if last != now {
            tracing::warn!(
                introspection = %name,
                "introspection call budget spent (max_calls_per_second); uncached tokens get 503"
            );
        }
    }

    async fn ask(&self, endpoint: &Endpoint, token: &BearerToken) -> Result<Answer, NoAnswer> {
        if !endpoint.budget.take() {
            return Err(NoAnswer::OverBudget);
        }
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token.expose())
            .append_pair("token_type_hint", "access_token")
            .finish();
        let request = Request::post(endpoint.config.url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, endpoint.authorization.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| NoAnswer::Failed)?;
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
        let start = std::time::Instant::now();
        let bytes = tokio::time::timeout(endpoint.config.timeout, exchange).await;
        let ok = matches!(bytes, Ok(Ok(_)));
        self.metrics
            .idp_request(name, IdpEndpoint::Introspection, ok, start.elapsed());
        let bytes = bytes
            .map_err(|_| {
                tracing::warn!(introspection = %name, "introspection endpoint timed out");
                NoAnswer::Failed
            })?
            .map_err(|()| NoAnswer::Failed)?;
        answer::parse(&bytes).map_err(|why| {
            tracing::warn!(introspection = %name, problem = %why, "introspection answer refused");
            NoAnswer::Failed
        })
    }
}

/// Forgets a flight once it is answered, or once its last waiter has gone (a request
/// abandoned mid-lookup): otherwise every abandoned lookup would leave an entry behind.
struct Leave<'a> {
    flights: &'a DashMap<Digest, Arc<OnceCell<Outcome>>>,
    digest: Digest,
    flight: Option<Arc<OnceCell<Outcome>>>,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let Some(flight) = self.flight.take() else {
            return;
        };
        let answered = flight.initialized();
        // A weak handle keeps the allocation, so the address below names this flight only.
        let ours = Arc::downgrade(&flight);
        drop(flight);
        self.flights.remove_if(&self.digest, |_, f| {
            std::ptr::eq(Arc::as_ptr(f), ours.as_ptr()) && (answered || Arc::strong_count(f) == 1)
        });
    }
}

impl Endpoint {
    fn new(c: &IntrospectionConfig) -> Result<Self, String> {
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let pair = format!(
            "{}:{}",
            encode(&c.client_id),
            encode(c.client_secret.expose())
        );
        let basic = base64::engine::general_purpose::STANDARD.encode(pair);
        let authorization = HeaderValue::from_str(&format!("Basic {basic}")).map_err(|_| {
            format!(
                "introspection {}: client credentials are not header-safe",
                c.name
            )
        })?;
        Ok(Endpoint {
            config: c.clone(),
            authorization,
            budget: CallBudget::new(c.max_calls_per_second),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[tokio::test]
    async fn an_abandoned_lookup_leaves_no_flight_behind() {
        // An endpoint that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let config = IntrospectionConfig {
            name: "idp".into(),
            url: format!("http://{addr}/introspect").parse().unwrap(),
            client_id: "gatehouse".into(),
            client_secret: Secret::new("secret".into()),
            cache: Duration::from_secs(60),
            cache_entries: 10,
            negative_cache_entries: 10,
            max_calls_per_second: 100,
            allow_http: false,
            timeout: Duration::from_secs(5),
            audiences: Vec::new(),
            issuer: None,
        };
        let introspector = Introspector::new(&[config], Arc::new(Metrics::new().unwrap()))
            .unwrap()
            .unwrap();
        for i in 0..3 {
            let token = BearerToken::new(format!("abandoned-{i}"));
            let lookup = introspector.introspect(&token);
            let gave_up = tokio::time::timeout(Duration::from_millis(100), lookup).await;
            assert!(gave_up.is_err(), "the endpoint answered");
        }
        assert!(introspector.flights.is_empty(), "abandoned flights stayed");
    }
}
