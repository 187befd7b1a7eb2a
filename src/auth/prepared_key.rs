//! Public keys parsed once, when their key set is loaded, for the signature check of a
//! token seen for the first time.
//!
//! ring parses an RSA key on every verification (the modulus, and the Montgomery constant
//! `R² mod n`, which costs about as much as the check itself); aws-lc keeps the parsed key
//! with its constants, so an RS256 check is the exponentiation alone. ES256 and Ed25519
//! keys are parsed once too (the point is validated and converted at load, not per token);
//! an Ed25519 key only when it is the 32 bytes [`crate::auth::ed25519`] admits.
//!
//! jsonwebtoken makes a verifier for every decode from the `DecodingKey` alone, so
//! [`decode`] hands the parsed key to the verifier factory beside it: in a thread-local,
//! for the length of that one synchronous decode, and taken only by a verifier made for
//! that very `DecodingKey` (compared by address). Anything else (HMAC, an algorithm the key
//! was not parsed for) is verified as before.

use std::cell::RefCell;
use std::sync::Arc;

use aws_lc_rs::signature::{self as lc, ParsedPublicKey, VerificationAlgorithm};
use jsonwebtoken::crypto::JwtVerifier;
use jsonwebtoken::errors::Error;
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, TokenData, Validation};

/// One key, parsed for each algorithm it may verify.
pub struct PreparedKey {
    by_alg: Vec<(Algorithm, ParsedPublicKey)>,
}

const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC_ALGORITHMS: [Algorithm; 2] = [Algorithm::ES256, Algorithm::ES384];
const ED_ALGORITHMS: [Algorithm; 1] = [Algorithm::EdDSA];

impl PreparedKey {
    /// The key parsed for `alg`, or for every algorithm of its family when the key names
    /// none; `None` for a key this module does not parse (HMAC) or cannot.
    pub fn new(key: &DecodingKey, alg: Option<Algorithm>) -> Option<Arc<Self>> {
        let (material, candidates): (Vec<u8>, &[Algorithm]) = match key.kind() {
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                (rsa_public_key_der(n, e), &RSA_ALGORITHMS[..])
            }
            DecodingKeyKind::SecretOrDer(der) => match key.family() {
                jsonwebtoken::AlgorithmFamily::Rsa => (der.clone(), &RSA_ALGORITHMS[..]),
                jsonwebtoken::AlgorithmFamily::Ec => (der.clone(), &EC_ALGORITHMS[..]),
                jsonwebtoken::AlgorithmFamily::Ed
                    if der.len() == crate::auth::ed25519::PUBLIC_KEY_LEN =>
                {
                    (der.clone(), &ED_ALGORITHMS[..])
                }
                _ => return None,
            },
        };
        let by_alg: Vec<_> = candidates
            .iter()
            .filter(|a| alg.is_none_or(|wanted| wanted == **a))
            .filter_map(|a| {
                let parsed = ParsedPublicKey::new(lc_algorithm(*a)?, &material).ok()?;
                Some((*a, parsed))
            })
            .collect();
        (!by_alg.is_empty()).then(|| Arc::new(Self { by_alg }))
    }

    fn for_alg(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        self.by_alg.iter().find(|(a, _)| *a == alg).map(|(_, k)| k)
    }
}

fn lc_algorithm(alg: Algorithm) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => &lc::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &lc::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &lc::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &lc::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &lc::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &lc::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &lc::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &lc::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &lc::ED25519,
        _ => return None,
    })
}

/// DER of the PKCS#1 `RSAPublicKey` (RFC 8017 A.1.1): a SEQUENCE of two INTEGERs.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    der_unsigned(&mut body, n);
    der_unsigned(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(0x30);
    der_length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn der_unsigned(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    // A set top bit would read as negative: DER puts a zero byte in front.
    let pad = bytes.first().is_none_or(|b| b & 0x80 != 0);
    out.push(0x02);
    der_length(out, bytes.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(bytes);
}

fn der_length(out: &mut Vec<u8>, len: usize) {
    let bytes = len.to_be_bytes();
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        out.push(0x80 | (bytes.len() - start) as u8);
        out.extend_from_slice(&bytes[start..]);
    }
}

thread_local! {
    /// The parsed key for the decode running on this thread, with its `DecodingKey`'s address.
    static HANDED: RefCell<Option<(usize, Arc<PreparedKey>)>> = const { RefCell::new(None) };
}

fn address(key: &DecodingKey) -> usize {
    key as *const DecodingKey as usize
}

/// `jsonwebtoken::decode`, with `key`'s signature check done by `prepared` when given.
pub fn decode<T: serde::de::DeserializeOwned>(
    token: &str,
    key: &DecodingKey,
    prepared: Option<&Arc<PreparedKey>>,
    validation: &Validation,
) -> Result<TokenData<T>, Error> {
    let Some(prepared) = prepared else {
        return jsonwebtoken::decode(token, key, validation);
    };
    HANDED.with(|h| *h.borrow_mut() = Some((address(key), prepared.clone())));
    let result = jsonwebtoken::decode(token, key, validation);
    HANDED.with(|h| h.borrow_mut().take());
    result
}

/// The verifier for this decode when [`decode`] handed a key parsed for `alg` beside `key`.
pub(crate) fn verifier_for(key: &DecodingKey, alg: Algorithm) -> Option<Box<dyn JwtVerifier>> {
    let prepared = HANDED.with(|h| {
        let mut handed = h.borrow_mut();
        match &*handed {
            Some((at, _)) if *at == address(key) => handed.take().map(|(_, p)| p),
            _ => None,
        }
    })?;
    prepared.for_alg(alg)?;
    Some(Box::new(PreparedVerifier {
        algorithm: alg,
        key: prepared,
    }))
}

struct PreparedVerifier {
    algorithm: Algorithm,
    key: Arc<PreparedKey>,
}

impl Verifier<Vec<u8>> for PreparedVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let ok = self
            .key
            .for_alg(self.algorithm)
            .is_some_and(|k| k.verify_sig(message, signature).is_ok());
        ok.then_some(()).ok_or_else(signature::Error::new)
    }
}

impl JwtVerifier for PreparedVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn rsa_pair(name: &str) -> (EncodingKey, DecodingKey) {
        let enc = EncodingKey::from_rsa_pem(&fixture(&format!("{name}.pem"))).unwrap();
        let dec = DecodingKey::from_rsa_pem(&fixture(&format!("{name}.pub.pem"))).unwrap();
        (enc, dec)
    }

    fn token(alg: Algorithm, key: &EncodingKey) -> String {
        crate::auth::jwt_crypto::install();
        let claims = serde_json::json!({"sub": "s", "exp": 4_000_000_000u64});
        jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
    }

    fn validation(alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.validate_aud = false;
        v
    }

    #[test]
    fn modulus_and_exponent_encode_to_the_der_a_pem_holds() {
        let pem = fixture("rsa1.pub.pem");
        let public = rsa::RsaPublicKey::from_public_key_pem(std::str::from_utf8(&pem).unwrap());
        let public = public.unwrap();
        let der = rsa_public_key_der(&public.n().to_bytes_be(), &public.e().to_bytes_be());
        let from_pem = DecodingKey::from_rsa_pem(&pem).unwrap();
        let DecodingKeyKind::SecretOrDer(expected) = from_pem.kind() else {
            panic!("a PEM key is DER");
        };
        assert_eq!(&der, expected);
    }

    #[test]
    fn the_parsed_key_is_what_verifies_and_only_for_its_own_decoding_key() {
        for alg in [Algorithm::RS256, Algorithm::RS512, Algorithm::PS256] {
            let (enc1, dec1) = rsa_pair("rsa1");
            let (_, dec2) = rsa_pair("rsa2");
            let signed = token(alg, &enc1);
            let (p1, p2) = (PreparedKey::new(&dec1, None), PreparedKey::new(&dec2, None));
            assert!(
                p1.as_ref().and_then(|p| p.for_alg(alg)).is_some(),
                "{alg:?}"
            );
            let decode = |key: &DecodingKey, prepared: Option<&Arc<PreparedKey>>| {
                decode::<serde_json::Value>(&signed, key, prepared, &validation(alg)).is_ok()
            };
            assert!(decode(&dec1, p1.as_ref()), "{alg:?}");
            // rsa2's parsed key handed beside rsa1's: the check is rsa2's, and fails.
            assert!(!decode(&dec1, p2.as_ref()), "{alg:?}");
            assert!(!decode(&dec2, p2.as_ref()), "{alg:?}");
            // Nothing handed stays behind for a later decode on this thread.
            assert!(verifier_for(&dec1, alg).is_none());
        }
        let ec = DecodingKey::from_ec_pem(&fixture("ec1.pub.pem")).unwrap();
        let signed = token(
            Algorithm::ES256,
            &EncodingKey::from_ec_pem(&fixture("ec1.pem")).unwrap(),
        );
        let prepared = PreparedKey::new(&ec, Some(Algorithm::ES256));
        assert!(prepared
            .as_ref()
            .and_then(|p| p.for_alg(Algorithm::ES256))
            .is_some());
        let v = validation(Algorithm::ES256);
        assert!(decode::<serde_json::Value>(&signed, &ec, prepared.as_ref(), &v).is_ok());
        let at = signed.len() - 10;
        let other = if &signed[at..=at] == "A" { "B" } else { "A" };
        let tampered = format!("{}{other}{}", &signed[..at], &signed[at + 1..]);
        assert!(decode::<serde_json::Value>(&tampered, &ec, prepared.as_ref(), &v).is_err());
    }

    #[test]
    fn an_ed25519_key_is_parsed_once_and_verifies_like_ring() {
        let public = crate::auth::ed25519::from_pem(&fixture("ed1.pub.pem")).unwrap();
        let prepared = PreparedKey::new(&public, None);
        assert!(prepared
            .as_ref()
            .and_then(|p| p.for_alg(Algorithm::EdDSA))
            .is_some());
        let enc = EncodingKey::from_ed_pem(&fixture("ed1.pem")).unwrap();
        let signed = token(Algorithm::EdDSA, &enc);
        let v = validation(Algorithm::EdDSA);
        assert!(decode::<serde_json::Value>(&signed, &public, prepared.as_ref(), &v).is_ok());
        let (_, rsa) = rsa_pair("rsa1");
        let wrong = PreparedKey::new(&rsa, None);
        assert!(decode::<serde_json::Value>(&signed, &public, wrong.as_ref(), &v).is_ok());
        let short = DecodingKey::from_ed_der(&[1u8; 31]);
        assert!(PreparedKey::new(&short, None).is_none());
    }

    #[test]
    fn a_key_naming_its_algorithm_is_parsed_for_that_one_and_hmac_not_at_all() {
        let (_, dec) = rsa_pair("rsa1");
        let only = PreparedKey::new(&dec, Some(Algorithm::PS256)).unwrap();
        assert!(only.for_alg(Algorithm::PS256).is_some());
        assert!(only.for_alg(Algorithm::RS256).is_none());
        assert!(PreparedKey::new(&DecodingKey::from_secret(b"0123456789abcdef"), None).is_none());
    }
}
