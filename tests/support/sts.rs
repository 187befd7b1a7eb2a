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
