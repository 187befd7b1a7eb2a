//! Token validation: from a `BearerToken` to verified claims, or an `AuthError`.
//!
//! Order of checks: size (done at extraction), cache, header (`alg` on the issuer's
//! allow-list, no `crit`, required `typ`), issuer chosen by the unverified `iss`, key
//! chosen by `kid` from *that issuer's* key set only, then jsonwebtoken verifies the
//! signature, `iss` and `aud`; `exp` must be present, and `exp`, `nbf` and `iat` are judged
//! with leeway by `numeric_date` on the whole seconds as written. `jku`, `x5u` and an embedded
//! `jwk` are parsed by jsonwebtoken but never read here: keys come only from config.
//!
//! Verified claims are cached ([`TokenCache`]: found by the signature's start, the whole
//! token compared on a hit) until `exp` + leeway, so a
//! client's repeat requests skip the signature check. Entries also remember the fingerprint
//! of the key that verified them: once the issuer stops publishing that key for the token's
//! `kid` (rotated out, or replaced under the same `kid`), earlier validations stop counting.
//!
//! Every token that validates, JWT or introspected, then passes [`numeric_date::check`]:
//! `exp`, `nbf` and `iat` are any JSON number, and absurd values are refused here.

use std::sync::Arc;

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use crate::auth::error::AuthError;
use crate::auth::introspect::Introspector;
use crate::auth::jwks::KeyStore;
use crate::auth::key_board::KeyRef;
use crate::auth::numeric_date;
use crate::auth::prepared_key;
use crate::auth::token_cache::TokenCache;
use crate::metrics::Metrics;
use crate::secret::BearerToken;

use crate::auth::claims::{check_identifiers, check_revocable, unix_now, Claims};

pub struct Validator {
    issuers: Vec<Arc<KeyStore>>,
    /// Each issuer's checks for each algorithm it allows, by the issuer's index: built
    /// with the generation, not for every token.
    validations: Vec<Vec<(Algorithm, Validation)>>,
    introspector: Option<Introspector>,
    cache: TokenCache<CacheEntry>,
    metrics: Arc<Metrics>,
}

struct CacheEntry {
    claims: Arc<Claims>,
    key: KeyUsed,
}

/// Which key verified a token, and what the token asked for: the validation holds only
/// while that key would still be tried for it.
struct KeyUsed {
    /// The issuer's index in this generation.
    issuer: usize,
    key: Arc<KeyRef>,
}

/// A token's claims and, for a JWT, the key that verified them (an introspected token has
/// none: the IdP answers for it).
pub struct Validated {
    pub claims: Arc<Claims>,
    pub(crate) key: Option<Arc<KeyRef>>,
}

impl Validator {
    pub fn new(
        issuers: Vec<Arc<KeyStore>>,
        introspector: Option<Introspector>,
        cache_capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        if !crate::auth::jwt_crypto::install() {
            tracing::warn!("jsonwebtoken was used before gatehouse chose its verifier; using RustCrypto (slower)");
        }
        let validations = issuers
            .iter()
            .map(|store| {
                let issuer = store.issuer();
                let each = issuer.algorithms.iter();
                each.map(|&alg| (alg, validation(issuer, alg))).collect()
            })
            .collect();
        Self {
            issuers,
            validations,
            introspector,
            cache: TokenCache::new(cache_capacity),
            metrics,
        }
    }

    pub fn issuers(&self) -> &[Arc<KeyStore>] {
        &self.issuers
    }

    /// The leeway of the issuer that signed `claims` (zero if it is not one of ours).
    pub fn leeway(&self, claims: &Claims) -> std::time::Duration {
        let iss = claims.get("iss").and_then(serde_json::Value::as_str);
        self.issuers
            .iter()
            .find(|s| Some(s.issuer().issuer.as_str()) == iss)
            .map_or(std::time::Duration::ZERO, |s| s.issuer().leeway)
    }

    /// Validates a token and returns its claims.
    pub async fn validate(&self, token: &BearerToken) -> Result<Validated, AuthError> {
        let now = unix_now();
        if let Some(validated) = self.cached(token.expose(), now) {
            self.metrics.token_cache(true);
            return Ok(validated);
        }
        self.metrics.token_cache(false);
        // Boxed: a signature check, a key fetch or an introspection call makes a large
        // future, which would otherwise be moved with every request's, cached ones too.
        Box::pin(self.validate_uncached(token, now)).await
    }

    /// What the cache holds for `token` now, if it is there and its key still published;
    /// a hit is counted by [`Self::count_hit`] once it is used.
    pub(crate) fn cached_now(&self, token: &str) -> Option<Validated> {
        self.cached(token, unix_now())
    }

    /// Counts a hit that [`Self::cached_now`] found and the caller used.
    pub(crate) fn count_hit(&self) {
        self.metrics.token_cache(true);
    }

    /// Validates a token the cache was just asked for and did not hold.
    pub(crate) async fn validate_missed(
        &self,
        token: &BearerToken,
    ) -> Result<Validated, AuthError> {
        self.metrics.token_cache(false);
        Box::pin(self.validate_uncached(token, unix_now())).await
    }

    async fn validate_uncached(
        &self,
        token: &BearerToken,
        now: u64,
    ) -> Result<Validated, AuthError> {
        let (key, claims) = match (self.verify(token).await, &self.introspector) {
            // Not a JWT, or one from an issuer we hold no keys for: ask the IdP. Its answers
            // have their own cache, bounded by what introspection says.
            (Err(AuthError::Malformed | AuthError::UnknownIssuer), Some(introspector)) => {
                let claims = introspector.introspect(token).await?;
                numeric_date::check(&claims)?;
                check_identifiers(&claims)?;
                return Ok(Validated { claims, key: None });
            }
            (result, _) => result?,
        };
        let mut claims = claims;
        numeric_date::settle(&mut claims, || payload(token.expose()))?;
        numeric_date::check(&claims)?;
        let leeway = self
            .issuers
            .get(key.issuer)
            .map_or(0, |s| s.issuer().leeway.as_secs());
        numeric_date::check_window(&claims, now, leeway)?;
        check_identifiers(&claims)?;
        check_revocable(&claims)?;
        let claims = Arc::new(claims);
        let validated = Validated {
            claims: claims.clone(),
            key: Some(key.key.clone()),
        };
        self.remember(token.expose(), key, &claims, now);
        Ok(validated)
    }

    fn cached(&self, token: &str, now: u64) -> Option<Validated> {
        self.cache.get(token, now, |entry| {
            let KeyUsed { issuer, key } = &entry.key;
            let still_published = self
                .issuers
                .get(*issuer)
                .and_then(|store| store.keys())
                .is_some_and(|keys| keys.holds(key.kid.as_deref(), key.alg, &key.fingerprint));
            still_published.then(|| Validated {
                claims: entry.claims.clone(),
                key: Some(key.clone()),
            })
        })
    }

    fn remember(&self, token: &str, key: KeyUsed, claims: &Arc<Claims>, now: u64) {
        let Some(store) = self.issuers.get(key.issuer) else {
            return;
        };
        let Some(exp) = numeric_date::get(claims, "exp") else {
            return;
        };
        // A token that is not valid yet (within leeway) is not cached: its nbf matters later.
        if numeric_date::get(claims, "nbf").is_some_and(|nbf| nbf > now) {
            return;
        }
        let not_after = exp.saturating_add(store.issuer().leeway.as_secs());
        let entry = CacheEntry {
            claims: claims.clone(),
            key,
        };
        self.cache.insert(token, entry, not_after, now);
    }

    async fn verify(&self, token: &BearerToken) -> Result<(KeyUsed, Claims), AuthError> {
        let raw = token.expose();
        let header = jsonwebtoken::decode_header(raw).map_err(|_| AuthError::Malformed)?;
        if header.crit.is_some() || names_crit(raw) {
            return Err(AuthError::CriticalHeader);
        }
        let (index, store) = self.issuer_of(raw)?;
        let issuer = store.issuer();
        // Only an algorithm on the issuer's list has checks built.
        let validation = self
            .validation(index, header.alg)
            .ok_or(AuthError::DisallowedAlgorithm)?;
        if let Some(required) = &issuer.typ {
            if !header
                .typ
                .as_deref()
                .is_some_and(|t| typ_matches(t, required))
            {
                return Err(AuthError::WrongType);
            }
        }
        let mut keys = store.keys().ok_or(AuthError::KeysUnavailable)?;
        let kid = header.kid.as_deref();
        if let Some(kid) = kid {
            if !keys.knows_kid(kid) && store.refresh_for_unknown_kid(kid).await {
                keys = store.keys().ok_or(AuthError::KeysUnavailable)?;
            }
        }
        let candidates = keys.candidates(kid, header.alg);
        if candidates.is_empty() {
            return Err(AuthError::UnknownKey);
        }
        let mut last = AuthError::BadSignature;
        for key in candidates {
            match prepared_key::decode::<Claims>(raw, &key.key, key.prepared.as_ref(), validation) {
                Ok(data) if !data.claims.contains_key("exp") => {
                    return Err(AuthError::MissingClaim);
                }
                Ok(data) => {
                    let used = KeyUsed {
                        issuer: index,
                        key: Arc::new(KeyRef {
                            iss: issuer.issuer.as_str().into(),
                            kid: kid.map(Box::from),
                            alg: header.alg,
                            fingerprint: key.fingerprint,
                        }),
                    };
                    return Ok((used, data.claims));
                }
                Err(e) => {
                    last = map_error(e.kind());
                    if last != AuthError::BadSignature {
                        // The signature verified (claims are checked after it): no other key will do better.
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// The checks for `alg` tokens of the issuer at `issuer`; none when the issuer does not
    /// allow `alg`.
    fn validation(&self, issuer: usize, alg: Algorithm) -> Option<&Validation> {
        let each = self.validations.get(issuer)?;
        each.iter().find(|(a, _)| *a == alg).map(|(_, v)| v)
    }

    /// The configured issuer named by the token's (not yet verified) `iss`.
    fn issuer_of(&self, raw: &str) -> Result<(usize, &Arc<KeyStore>), AuthError> {
        #[derive(serde::Deserialize)]
        struct Iss {
            iss: Option<String>,
        }
        let bytes = payload(raw).ok_or(AuthError::Malformed)?;
        let iss: Iss = serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
        let iss = iss.iss.ok_or(AuthError::MissingClaim)?;
        self.issuers
            .iter()
            .enumerate()
            .find(|(_, s)| s.issuer().issuer == iss)
            .ok_or(AuthError::UnknownIssuer)
    }
}

/// A JWT's payload, the claims' JSON text.
fn payload(raw: &str) -> Option<Vec<u8>> {
    let payload = raw.split('.').nth(1)?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
}

/// Whether the JOSE header has a `crit` member at all: jsonwebtoken reads `"crit": null`
/// as no `crit`, but RFC 7515 §4.1.11 allows only a non-empty list, which gatehouse
/// understands none of.
fn names_crit(raw: &str) -> bool {
    let Some(header) = raw.split('.').next() else {
        return false;
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes)
        .is_ok_and(|members| members.contains_key("crit"))
}

fn validation(issuer: &crate::config::IssuerConfig, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.algorithms = vec![alg];
    v.leeway = issuer.leeway.as_secs();
    // `exp` and `nbf` are judged by `numeric_date::check_window` on the seconds as written:
    // jsonwebtoken reads them through an f64 and rounds (`N.5` and `N.99999999` are
    // `N + 1` to it), which would refuse a token whose `nbf` has come.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.set_issuer(&[issuer.issuer.as_str()]);
    v.set_audience(&issuer.audiences);
    // `exp` is required too, but checked in `verify`: jsonwebtoken would call an `exp` it
    // cannot read "missing", and an unusable date is `BadDateClaim` here.
    v.set_required_spec_claims(&["iss", "aud"]);
    v
}

/// RFC 9068 §4: `at+jwt`, also written with the `application/` prefix, case-insensitive.
fn typ_matches(actual: &str, required: &str) -> bool {
    let strip = |s: &str| {
        let lower = s.to_ascii_lowercase();
        lower
            .strip_prefix("application/")
            .map(String::from)
            .unwrap_or(lower)
    };
    strip(actual) == strip(required)
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::UnknownIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) => AuthError::MissingClaim,
        // jsonwebtoken's word for an `exp` or `nbf` that is no u64 (negative, huge).
        ErrorKind::InvalidClaimFormat(_) => AuthError::BadDateClaim,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => AuthError::DisallowedAlgorithm,
        ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) => {
            AuthError::BadSignature
        }
        _ => AuthError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_accepts_the_media_type_spelling() {
        assert!(typ_matches("at+jwt", "at+jwt"));
        assert!(typ_matches("application/AT+JWT", "at+jwt"));
        assert!(!typ_matches("JWT", "at+jwt"));
    }

    #[test]
    fn claim_failures_map_to_their_reasons() {
        assert_eq!(map_error(&ErrorKind::ExpiredSignature), AuthError::Expired);
        assert_eq!(
            map_error(&ErrorKind::ImmatureSignature),
            AuthError::NotYetValid
        );
        assert_eq!(
            map_error(&ErrorKind::InvalidAudience),
            AuthError::WrongAudience
        );
        assert_eq!(
            map_error(&ErrorKind::MissingRequiredClaim("exp".into())),
            AuthError::MissingClaim
        );
        assert_eq!(
            map_error(&ErrorKind::InvalidSignature),
            AuthError::BadSignature
        );
        assert_eq!(
            map_error(&ErrorKind::InvalidClaimFormat("exp".into())),
            AuthError::BadDateClaim
        );
    }
}
