//! Ed25519 keys (`alg: EdDSA`, RFC 8037): from a JWKS entry, from a PEM file, and the
//! signature check, done by ring like every other verification.
//!
//! jsonwebtoken turns any `kty: OKP` key into an "Ed" key whatever its `crv`, and its
//! RustCrypto verifier slices the first 32 bytes of the key without a length check. So
//! keys are admitted here only for `crv: Ed25519` with exactly 32 bytes of `x`: an X25519
//! (key agreement), Ed448 or unknown-curve key is skipped like any key we cannot use.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::DecodingKey;

/// An Ed25519 public key is the 32-byte encoding of a curve point (RFC 8032 §5.1.5).
pub const PUBLIC_KEY_LEN: usize = 32;

/// The verification key of an `OKP` JWK on Ed25519; `None` for anything else.
pub fn from_jwk(jwk: &Jwk) -> Option<DecodingKey> {
    let AlgorithmParameters::OctetKeyPair(params) = &jwk.algorithm else {
        return None;
    };
    if params.curve != EllipticCurve::Ed25519 {
        return None;
    }
    let x = URL_SAFE_NO_PAD.decode(&params.x).ok()?;
    (x.len() == PUBLIC_KEY_LEN).then(|| DecodingKey::from_ed_der(&x))
}

/// The key of a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) with the Ed25519 OID.
pub fn from_pem(pem: &[u8]) -> Option<DecodingKey> {
    let key = DecodingKey::from_ed_pem(pem).ok()?;
    let raw = key.try_get_as_bytes().ok()?;
    (raw.len() == PUBLIC_KEY_LEN).then_some(key)
}

/// Whether `signature` is `public`'s Ed25519 signature of `message`.
pub fn verify(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    public.len() == PUBLIC_KEY_LEN
        && ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
            .verify(message, signature)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair;
    use serde_json::json;

    fn pair() -> ring::signature::Ed25519KeyPair {
        let pkcs8 =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                .unwrap();
        ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn jwk(v: serde_json::Value) -> Jwk {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_ed25519_okp_keys_of_the_right_size_are_admitted() {
        let pair = pair();
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let key = from_jwk(&jwk(json!({"kty": "OKP", "crv": "Ed25519", "x": x}))).unwrap();
        assert_eq!(key.try_get_as_bytes().unwrap(), pair.public_key().as_ref());
        // The same bytes on another curve, a short or long x, or no OKP at all: refused.
        let refused = [
            json!({"kty": "OKP", "crv": "P-256", "x": x}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([7u8; 31])}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([7u8; 33])}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "not base64!"}),
            json!({"kty": "OKP", "crv": "X25519", "x": x}),
            json!({"kty": "OKP", "crv": "Ed448", "x": x}),
        ];
        for v in refused {
            assert!(from_jwk(&jwk(v.clone())).is_none(), "{v}");
        }
    }

    #[test]
    fn verify_accepts_the_signature_and_nothing_else() {
        let pair = pair();
        let public = pair.public_key().as_ref();
        let sig = pair.sign(b"header.payload");
        assert!(verify(public, b"header.payload", sig.as_ref()));
        assert!(!verify(public, b"header.payloaD", sig.as_ref()));
        assert!(!verify(&public[..31], b"header.payload", sig.as_ref()));
        assert!(!verify(public, b"header.payload", &sig.as_ref()[..63]));
    }

    #[test]
    fn pem_public_keys_load_and_other_pems_do_not() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let ed = std::fs::read(format!("{dir}/tests/fixtures/ed1.pub.pem")).unwrap();
        assert!(from_pem(&ed).is_some());
        let rsa = std::fs::read(format!("{dir}/tests/fixtures/rsa1.pub.pem")).unwrap();
        assert!(from_pem(&rsa).is_none());
        let ec = std::fs::read(format!("{dir}/tests/fixtures/ec1.pub.pem")).unwrap();
        assert!(from_pem(&ec).is_none());
    }
}
