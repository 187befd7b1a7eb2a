//! Signature verification for jsonwebtoken backed by ring, the library rustls already
//! links. RustCrypto's RSA takes ~150 µs per RS256 verification; ring takes a tenth of
//! that, which is the whole cost of a token seen for the first time. Ed25519 (`EdDSA`) is
//! checked by ring too, through [`crate::auth::ed25519`]. Signing (only
//! `gatehouse token` and the demo) stays with jsonwebtoken's RustCrypto provider.
//!
//! jsonwebtoken keeps one provider per process, chosen on first use: [`install`] must run
//! before any token is encoded or decoded. If something used jsonwebtoken first, that
//! choice stands (results are identical, only slower) and `install` says so.

use std::sync::LazyLock;

use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use ring::signature::{
    self as sig, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm,
};

static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| CryptoProvider {
    verifier_factory: new_verifier,
    ..jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.clone()
});

/// Makes ring the process's verifier; returns false when another provider was chosen first.
pub fn install() -> bool {
    let ours: &'static CryptoProvider = &PROVIDER;
    match ours.install_default() {
        Ok(()) => true,
        // Installed already: by an earlier call of ours, or by a first use elsewhere.
        Err(installed) => std::ptr::eq(installed, ours),
    }
}

enum Key {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    RsaDer(Vec<u8>),
    Ec(Vec<u8>),
    Ed25519(Vec<u8>),
    Hmac(ring::hmac::Key),
}

struct RingVerifier {
    algorithm: Algorithm,
    key: Key,
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    if key.family() != algorithm.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let material = match (key.kind(), algorithm) {
        (
            DecodingKeyKind::SecretOrDer(secret),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512,
        ) => Key::Hmac(ring::hmac::Key::new(hmac_algorithm(*algorithm), secret)),
        (DecodingKeyKind::RsaModulusExponent { n, e }, _) => Key::Rsa {
            n: n.clone(),
            e: e.clone(),
        },
        (DecodingKeyKind::SecretOrDer(der), Algorithm::ES256 | Algorithm::ES384) => {
            // ring takes only uncompressed points; anything else goes to RustCrypto.
            if der.first() != Some(&0x04) {
                return (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.verifier_factory)(
                    algorithm, key,
                );
            }
            Key::Ec(der.clone())
        }
        (DecodingKeyKind::SecretOrDer(raw), Algorithm::EdDSA) => {
            if raw.len() != crate::auth::ed25519::PUBLIC_KEY_LEN {
                return Err(ErrorKind::InvalidEddsaKey.into());
            }
            Key::Ed25519(raw.clone())
        }
        (DecodingKeyKind::SecretOrDer(der), _) => Key::RsaDer(der.clone()),
    };
    Ok(Box::new(RingVerifier {
        algorithm: *algorithm,
        key: material,
    }))
}

/// SHA-256 of a key's material, to tell keys apart whatever `kid` they are published under.
pub fn fingerprint(key: &DecodingKey) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => {
            hash.update(b"der\0");
            hash.update(bytes);
        }
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            hash.update(b"rsa\0");
            hash.update((n.len() as u64).to_be_bytes());
            hash.update(n);
            hash.update(e);
        }
    }
    hash.finalize().into()
}

fn hmac_algorithm(alg: Algorithm) -> ring::hmac::Algorithm {
    match alg {
        Algorithm::HS384 => ring::hmac::HMAC_SHA384,
        Algorithm::HS512 => ring::hmac::HMAC_SHA512,
        _ => ring::hmac::HMAC_SHA256,
    }
}

fn public_key_algorithm(alg: Algorithm) -> Option<&'static dyn VerificationAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED),
        rsa => rsa_parameters(rsa).map(|p| p as &'static dyn VerificationAlgorithm),
    }
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let ok = match &self.key {
            Key::Hmac(key) => ring::hmac::verify(key, message, signature).is_ok(),
            Key::Rsa { n, e } => rsa_parameters(self.algorithm).is_some_and(|params| {
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .is_ok()
            }),
            Key::Ed25519(raw) => crate::auth::ed25519::verify(raw, message, signature),
            Key::RsaDer(der) | Key::Ec(der) => {
                public_key_algorithm(self.algorithm).is_some_and(|alg| {
                    UnparsedPublicKey::new(alg, der)
                        .verify(message, signature)
                        .is_ok()
                })
            }
        };
        ok.then_some(()).ok_or_else(signature::Error::new)
    }
}

fn rsa_parameters(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// Signs with RustCrypto, verifies with ring: both must agree on every algorithm we use.
    #[test]
    fn ring_verifies_what_rust_crypto_signs_and_nothing_else() {
        let cases = [
            (Algorithm::RS256, "rsa1"),
            (Algorithm::RS512, "rsa1"),
            (Algorithm::PS256, "rsa1"),
            (Algorithm::ES256, "ec1"),
            (Algorithm::EdDSA, "ed1"),
        ];
        for (alg, name) in cases {
            let private = fixture(&format!("{name}.pem"));
            let public = fixture(&format!("{name}.pub.pem"));
            let (enc, dec) = if alg == Algorithm::EdDSA {
                (
                    jsonwebtoken::EncodingKey::from_ed_pem(&private),
                    crate::auth::ed25519::from_pem(&public)
                        .ok_or(ErrorKind::InvalidEddsaKey.into()),
                )
            } else if alg == Algorithm::ES256 {
                (
                    jsonwebtoken::EncodingKey::from_ec_pem(&private),
                    DecodingKey::from_ec_pem(&public),
                )
            } else {
                (
                    jsonwebtoken::EncodingKey::from_rsa_pem(&private),
                    DecodingKey::from_rsa_pem(&public),
                )
            };
            let (enc, dec) = (enc.unwrap(), dec.unwrap());
            let signer =
                (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.signer_factory)(&alg, &enc)
                    .unwrap();
            let signature =
                jsonwebtoken::signature::Signer::try_sign(&*signer, b"header.payload").unwrap();
            let verifier = new_verifier(&alg, &dec).unwrap();
            assert!(
                verifier.verify(b"header.payload", &signature).is_ok(),
                "{alg:?}"
            );
            assert!(
                verifier.verify(b"header.payloaD", &signature).is_err(),
                "{alg:?}"
            );
        }
        let hmac = DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let verifier = new_verifier(&Algorithm::HS256, &hmac).unwrap();
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef"),
            b"m",
        );
        assert!(verifier.verify(b"m", &tag.as_ref().to_vec()).is_ok());
        assert!(verifier.verify(b"n", &tag.as_ref().to_vec()).is_err());
        assert!(new_verifier(
            &Algorithm::HS256,
            &DecodingKey::from_rsa_pem(&fixture("rsa1.pub.pem")).unwrap()
        )
        .is_err());
        // An Ed key of the wrong size never reaches ring.
        let short = DecodingKey::from_ed_der(&[1u8; 31]);
        assert!(new_verifier(&Algorithm::EdDSA, &short).is_err());
        let ed = crate::auth::ed25519::from_pem(&fixture("ed1.pub.pem")).unwrap();
        assert!(new_verifier(&Algorithm::RS256, &ed).is_err());
    }
}
