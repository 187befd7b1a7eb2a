//! A key set ([`Keys`]) and the loaders of static key sources. The loaders take plain
//! paths and secrets, not the config's `KeySource`, so `gatehouse check` can load exactly
//! what `run` loads without the config depending on this module's callers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use crate::auth::prepared_key::PreparedKey;
use crate::secret::Secret;

/// One verification key and the algorithm family it may be used with.
#[derive(Clone)]
pub struct VerifyKey {
    pub key: DecodingKey,
    /// The JWK's `alg`, when it names one: then only that algorithm may use the key.
    pub alg: Option<Algorithm>,
    /// SHA-256 of the key material: a cached validation holds only while the key it was
    /// made with is still published (a new key under an old `kid` is another key).
    pub fingerprint: [u8; 32],
    /// The public key parsed once, here, rather than for every token it verifies.
    pub prepared: Option<Arc<PreparedKey>>,
}

impl VerifyKey {
    pub fn new(key: DecodingKey, alg: Option<Algorithm>) -> Self {
        Self {
            fingerprint: crate::auth::jwt_crypto::fingerprint(&key),
            prepared: PreparedKey::new(&key, alg),
            key,
            alg,
        }
    }

    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.key.family() == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
}

/// An immutable key set; refresh builds a new one and swaps it in.
#[derive(Default)]
pub struct Keys {
    by_kid: HashMap<String, Vec<VerifyKey>>,
    /// Keys without a `kid`, tried for tokens that carry none.
    unnamed: Vec<VerifyKey>,
}

impl Keys {
    /// The keys a token with this `kid` and `alg` may be verified with.
    pub fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Vec<&VerifyKey> {
        let pool: Box<dyn Iterator<Item = &VerifyKey>> = match kid {
            // A key published without a kid (a PEM file) verifies tokens whatever kid they carry.
            Some(kid) => Box::new(
                self.by_kid
                    .get(kid)
                    .into_iter()
                    .flatten()
                    .chain(&self.unnamed),
            ),
            None => Box::new(self.unnamed.iter().chain(self.by_kid.values().flatten())),
        };
        pool.filter(|k| k.accepts(alg)).collect()
    }

    /// Whether the key with this fingerprint would still be tried for this `kid` and `alg`.
    pub fn holds(&self, kid: Option<&str>, alg: Algorithm, fingerprint: &[u8; 32]) -> bool {
        // The same pools as `candidates`, without building a list: this runs on cache hits.
        let matches = |k: &VerifyKey| &k.fingerprint == fingerprint && k.accepts(alg);
        let named = match kid {
            Some(kid) => self.by_kid.get(kid).is_some_and(|v| v.iter().any(matches)),
            None => self.by_kid.values().flatten().any(matches),
        };
        named || self.unnamed.iter().any(matches)
    }

    pub fn knows_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    pub fn len(&self) -> usize {
        self.unnamed.len() + self.by_kid.values().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys of a JWKS document gatehouse may verify with. Each key is read on its own,
    /// so one it cannot use (another job, type or curve) leaves the others usable.
    pub(crate) fn from_document(document: &Document) -> Self {
        let mut keys = Keys::default();
        for raw in &document.keys {
            let Some(alg) = published_for_verifying(raw) else {
                continue;
            };
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                continue;
            };
            // A key we cannot use (unsupported type or parameters) is skipped, not fatal:
            // IdPs publish keys for other consumers too.
            let key = match &jwk.algorithm {
                // Only Ed25519, checked: jsonwebtoken would take any OKP curve.
                AlgorithmParameters::OctetKeyPair(_) => crate::auth::ed25519::from_jwk(&jwk),
                _ => DecodingKey::from_jwk(&jwk).ok(),
            };
            let Some(key) = key else {
                continue;
            };
            let entry = VerifyKey::new(key, alg);
            match &jwk.common.key_id {
                Some(kid) => keys.by_kid.entry(kid.clone()).or_default().push(entry),
                None => keys.unnamed.push(entry),
            }
        }
        keys
    }
}

/// A JWKS document: its `keys`, each still raw JSON.
#[derive(serde::Deserialize)]
pub(crate) struct Document {
    keys: Vec<serde_json::Value>,
}

/// RFC 7517 §4.2–4.4, read from the key's own members before any library reads them (a
/// member of the wrong JSON type must not read as absent): a key whose `use` is anything
/// but `"sig"`, whose `key_ops` is not a list of strings holding `"verify"`, or whose `alg`
/// is not a signature algorithm gatehouse knows (`RSA-OAEP`, `ECDH-ES`: an encryption key)
/// was published for another job. Its private half may decrypt or unwrap for anyone at
/// the IdP, which must never make it a signing oracle. `Some(alg)`: usable, for the
/// algorithm it names if it names one.
fn published_for_verifying(raw: &serde_json::Value) -> Option<Option<Algorithm>> {
    use serde_json::Value;
    let by_use = raw.get("use").is_none_or(|u| u == "sig");
    let by_ops = match raw.get("key_ops") {
        None => true,
        Some(Value::Array(ops)) => {
            ops.iter().all(Value::is_string) && ops.iter().any(|op| op == "verify")
        }
        Some(_) => false,
    };
    if !(by_use && by_ops) {
        return None;
    }
    match raw.get("alg") {
        None => Some(None),
        Some(alg) => alg.as_str()?.parse::<Algorithm>().ok().map(Some),
    }
}

/// An HMAC secret as the one, unnamed key.
pub fn hmac(secret: &Secret) -> Keys {
    Keys {
        unnamed: vec![VerifyKey::new(
            DecodingKey::from_secret(secret.expose().as_bytes()),
            None,
        )],
        ..Keys::default()
    }
}

/// An RSA, EC or Ed25519 public key in a PEM file as the one, unnamed key.
pub fn public_key_file(path: &Path, alg: Algorithm) -> Result<Keys, String> {
    let pem = crate::files::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let key = match alg.family() {
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
        _ => DecodingKey::from_rsa_pem(&pem),
    }
    .or_else(|_| DecodingKey::from_rsa_pem(&pem))
    .or_else(|_| DecodingKey::from_ec_pem(&pem))
    .ok()
    .or_else(|| crate::auth::ed25519::from_pem(&pem))
    .ok_or_else(|| {
        format!(
            "{} holds no RSA, EC or Ed25519 public key in PEM",
            path.display()
        )
    })?;
    Ok(Keys {
        unnamed: vec![VerifyKey::new(key, None)],
        ..Keys::default()
    })
}

/// The signing keys of a JWKS document on disk; none usable is an error.
pub fn jwks_file(path: &Path) -> Result<Keys, String> {
    let text = crate::files::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let document: Document = serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not a JWKS document: {e}", path.display()))?;
    let keys = Keys::from_document(&document);
    if keys.is_empty() {
        return Err(format!("{} holds no usable signing key", path.display()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa(name: &str) -> VerifyKey {
        let pem = std::fs::read(format!("tests/fixtures/{name}.pub.pem")).unwrap();
        VerifyKey::new(DecodingKey::from_rsa_pem(&pem).unwrap(), None)
    }

    #[test]
    fn a_key_is_held_by_its_material_not_its_kid() {
        let (rsa1, rsa2) = (rsa("rsa1"), rsa("rsa2"));
        assert_ne!(rsa1.fingerprint, rsa2.fingerprint);
        let mut keys = Keys::default();
        keys.by_kid.insert("k1".into(), vec![rsa2.clone()]);
        // The old key's validation does not survive a new key published under its kid.
        assert!(!keys.holds(Some("k1"), Algorithm::RS256, &rsa1.fingerprint));
        assert!(keys.holds(Some("k1"), Algorithm::RS256, &rsa2.fingerprint));
        assert!(!keys.holds(Some("k2"), Algorithm::RS256, &rsa2.fingerprint));
        assert!(!keys.holds(Some("k1"), Algorithm::ES256, &rsa2.fingerprint));
        // A key without a kid is tried for any kid, so it holds for any.
        keys.unnamed.push(rsa1.clone());
        assert!(keys.holds(Some("other"), Algorithm::RS256, &rsa1.fingerprint));
    }
}
