//! Keys and tokens: the throwaway keys in `tests/fixtures/`, claims, signed and hand-built JWTs.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[derive(Clone)]
pub struct Key {
    pub name: &'static str,
    pub alg: Algorithm,
    pub kid: Option<String>,
}

impl Key {
    pub fn rsa(name: &'static str, kid: &str) -> Self {
        Key {
            name,
            alg: Algorithm::RS256,
            kid: Some(kid.into()),
        }
    }

    pub fn ec(name: &'static str, kid: &str) -> Self {
        Key {
            name,
            alg: Algorithm::ES256,
            kid: Some(kid.into()),
        }
    }

    pub fn ed(name: &'static str, kid: &str) -> Self {
        Key {
            name,
            alg: Algorithm::EdDSA,
            kid: Some(kid.into()),
        }
    }

    pub fn private_pem(&self) -> Vec<u8> {
        std::fs::read(fixture(&format!("{}.pem", self.name))).unwrap()
    }

    pub fn public_pem_path(&self) -> PathBuf {
        fixture(&format!("{}.pub.pem", self.name))
    }

    pub fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&self.private_pem()).unwrap(),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&self.private_pem()).unwrap(),
            _ => EncodingKey::from_rsa_pem(&self.private_pem()).unwrap(),
        }
    }

    /// The public key as a JWK, as an IdP publishes it.
    pub fn jwk(&self) -> Value {
        let pem = std::fs::read_to_string(self.public_pem_path()).unwrap();
        let mut jwk = match self.alg {
            Algorithm::EdDSA => {
                // An Ed25519 SubjectPublicKeyInfo is a 12-byte prefix and the 32-byte key.
                let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap();
                json!({
                    "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                    "x": URL_SAFE_NO_PAD.encode(&der[12..]),
                })
            }
            Algorithm::ES256 => {
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                use p256::pkcs8::DecodePublicKey;
                let key = p256::PublicKey::from_public_key_pem(&pem).unwrap();
                let point = key.to_encoded_point(false);
                json!({
                    "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                    "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                    "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
                })
            }
            _ => {
                use rsa::pkcs8::DecodePublicKey;
                use rsa::traits::PublicKeyParts;
                let key = rsa::RsaPublicKey::from_public_key_pem(&pem).unwrap();
                json!({
                    "kty": "RSA", "alg": "RS256", "use": "sig",
                    "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                    "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
                })
            }
        };
        if let Some(kid) = &self.kid {
            jwk["kid"] = json!(kid);
        }
        jwk
    }
}

/// Standard claims for `iss`/`aud`, valid for an hour, merged with `extra`.
pub fn claims(iss: &str, aud: &str, extra: Value) -> Value {
    let mut c = json!({
        "iss": iss, "aud": aud, "sub": "alice", "iat": now(), "exp": now() + 3600,
        "jti": uuid_like(),
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

fn uuid_like() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

pub fn mint(key: &Key, claims: &Value) -> String {
    // Before any jsonwebtoken use, so the proxies under test verify with ring as in production.
    gatehouse::auth::jwt_crypto::install();
    let mut header = Header::new(key.alg);
    header.kid = key.kid.clone();
    jsonwebtoken::encode(&header, claims, &key.encoding_key()).unwrap()
}

pub fn mint_with(header: &Header, key: &EncodingKey, claims: &Value) -> String {
    gatehouse::auth::jwt_crypto::install();
    jsonwebtoken::encode(header, claims, key).unwrap()
}

/// A token assembled by hand from raw JSON header and claims and raw signature bytes.
pub fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// A JWS with exactly this JOSE header (members a `Header` cannot express too), signed by
/// `key`.
pub fn sign_raw(header: Value, claims: Value, key: &Key) -> String {
    gatehouse::auth::jwt_crypto::install();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key.encoding_key(), key.alg);
    format!("{input}.{}", signature.unwrap())
}
