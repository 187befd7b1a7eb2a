//! The test issuer most test files share: its URL, HMAC secret and `[[issuer]]` block, and
//! HS256 tokens signed with that secret.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use super::tokens::{mint_with, Key};

macro_rules! iss {
    () => {
        "https://sts.example/"
    };
}

/// The `iss` of the shared test issuer.
pub const ISS: &str = iss!();
/// Its HMAC secret (32 bytes), given to the proxy as the secret named `HS`.
pub const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// The `[[issuer]]` table of that issuer, audience `api`; more keys may follow it.
pub const HS_ISSUER: &str = concat!(
    "[[issuer]]\nname = \"sts\"\nissuer = \"",
    iss!(),
    "\"\naudiences = [\"api\"]\nhmac_secret_env = \"HS\""
);

/// `claims` signed with HS256 and [`SECRET`].
pub fn mint_hs(claims: &Value) -> String {
    mint_with(
        &Header::new(Algorithm::HS256),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

/// The same issuer verifying RS256 with `key`'s public PEM instead of the HMAC secret.
pub fn rs256_issuer(key: &Key) -> String {
    format!(
        "[[issuer]]\nname = \"sts\"\nissuer = \"{ISS}\"\naudiences = [\"api\"]\n\
         public_key_file = {:?}\nalgorithms = [\"RS256\"]",
        key.public_pem_path()
    )
}

/// An HS256 token of `sub` with a fresh random `jti`, issued 10 s ago (so a revocation of
/// the subject "now" covers it): the token and its `jti`.
pub fn revocable_token(sub: &str) -> (String, String) {
    let jti = format!("jti-{}", rand::random::<u64>());
    let mut c = super::tokens::claims(ISS, "api", serde_json::json!({ "sub": sub, "jti": jti }));
    c["iat"] = serde_json::json!(super::tokens::now() - 10);
    (mint_hs(&c), jti)
}

/// An HS256 token of `sub` with `jti`, expiring `ttl_secs` from now.
pub fn token_until(sub: &str, ttl_secs: u64, jti: &str) -> String {
    let mut c = super::tokens::claims(ISS, "api", serde_json::json!({ "jti": jti }));
    c["sub"] = serde_json::json!(sub);
    c["exp"] = serde_json::json!(super::tokens::now() + ttl_secs);
    mint_hs(&c)
}
