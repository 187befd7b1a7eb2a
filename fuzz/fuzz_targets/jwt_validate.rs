//! JWT header/claims parsing and validation through `gatehouse::auth::validate::Validator`.
//!
//! The validator is built once, as `app.rs` builds it, over the static issuers of
//! `common.rs` (HS256/384/512 secret, an issuer that requires `typ = at+jwt`, RSA and EC PEM
//! keys from tests/fixtures, a JWKS file with `kid`s); tokens run through `validate` on a
//! current-thread runtime. The first input byte picks the mode:
//!
//! - `S` (signed): the rest is `<header JSON>\n<claims JSON>`; the harness base64url-encodes
//!   both and signs them with the HMAC secret (HS384/HS512 when the header says so), so the
//!   fuzzer gets past the signature into header checks, issuer choice and claim validation.
//! - anything else (raw): the rest is the token text itself (signature and all), as it would
//!   arrive after `token::accept`.
//!
//! Every input also goes through `jsonwebtoken::decode_header` as raw text.
//!
//! Checked beyond "no panic": an accepted token names one of our issuers in `iss`, has an
//! `aud` we accept, a numeric `exp` not past `now - leeway`, and no `nbf` after
//! `now + leeway`; the policy and identity-header code runs on every accepted claim set.

#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gatehouse::auth::claims::Claims;
use gatehouse::auth::jwks::KeyStore;
use gatehouse::auth::validate::Validator;
use gatehouse::metrics::Metrics;
use gatehouse::secret::BearerToken;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

struct Harness {
    runtime: tokio::runtime::Runtime,
    validator: Validator,
}

fn harness() -> &'static Harness {
    static HARNESS: std::sync::LazyLock<Harness> = std::sync::LazyLock::new(|| {
        let config = common::config();
        let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("metrics: {e}")));
        let client = gatehouse::http_client::build(std::time::Duration::from_secs(1), None)
            .unwrap_or_else(|e| panic!("http client: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        let issuers: Vec<Arc<KeyStore>> = runtime.block_on(async {
            config
                .issuers
                .iter()
                .map(|i| KeyStore::new(i.clone(), client.clone(), metrics.clone()))
                .collect()
        });
        for store in &issuers {
            assert!(
                store.is_ready(),
                "issuer {} has no keys",
                store.issuer().name
            );
        }
        let validator = Validator::new(issuers, None, 1000, metrics);
        Harness { runtime, validator }
    });
    &HARNESS
}

fn sign(header: &[u8], claims: &[u8]) -> String {
    let alg = serde_json::from_slice::<Value>(header)
        .ok()
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(String::from));
    let algorithm = match alg.as_deref() {
        Some("HS384") => ring::hmac::HMAC_SHA384,
        Some("HS512") => ring::hmac::HMAC_SHA512,
        _ => ring::hmac::HMAC_SHA256,
    };
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = ring::hmac::Key::new(algorithm, common::HS_SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// A NumericDate rounded, as jsonwebtoken read it: gatehouse now drops the fraction, so a
/// date it accepts is never later than this bound says.
fn numeric_date(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f.round() as u64)
    })
}

fn check_accepted(claims: &Arc<Claims>) {
    let h = harness();
    let now = gatehouse::auth::claims::unix_now();
    let iss = claims.get("iss").and_then(Value::as_str);
    let store = h
        .validator
        .issuers()
        .iter()
        .find(|s| Some(s.issuer().issuer.as_str()) == iss)
        .unwrap_or_else(|| panic!("accepted a token whose iss {iss:?} is not one of ours"));
    let issuer = store.issuer();
    let leeway = issuer.leeway.as_secs();
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => issuer.audiences.contains(a),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|a| issuer.audiences.iter().any(|ours| ours == a)),
        _ => false,
    };
    assert!(aud_ok, "accepted a token with aud {:?}", claims.get("aud"));
    let exp = claims.get("exp").and_then(numeric_date);
    let exp = exp.unwrap_or_else(|| panic!("accepted a token with exp {:?}", claims.get("exp")));
    assert!(
        exp.saturating_add(leeway) >= now,
        "accepted an expired token (exp {exp})"
    );
    match claims.get("nbf") {
        None => {}
        Some(nbf) => {
            let nbf =
                numeric_date(nbf).unwrap_or_else(|| panic!("accepted a token with nbf {nbf:?}"));
            assert!(
                nbf <= now.saturating_add(leeway),
                "accepted a token before its nbf ({nbf})"
            );
        }
    }
    assert!(h.validator.leeway(claims) == issuer.leeway);

    // What the pipeline does next with the claims: policy, then identity headers.
    let config = common::config();
    for route in &config.routes {
        if let Ok(permit) =
            gatehouse::auth::policy::authorize(route, &config.claims, Some(claims.clone()), ())
        {
            let access = permit.access();
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "x-auth-subject",
                http::HeaderValue::from_static("client-forged"),
            );
            let identity =
                std::sync::Arc::new(gatehouse::upstream::identity::IdentityHeaders::new(config));
            gatehouse::upstream::identity::attach(
                &mut headers,
                &identity,
                access,
                &gatehouse::upstream::identity::Remembered::default(),
            );
            assert!(
                headers
                    .get("x-auth-subject")
                    .is_none_or(|v| v != "client-forged"),
                "a client-supplied identity header survived"
            );
            let _ = access
                .identity()
                .map(|i| config.claims.subject_of(i.claims()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let token = match data.split_first() {
        Some((b'S', rest)) => {
            let (header, claims) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b"{}"[..]),
            };
            sign(header, claims)
        }
        Some((_, rest)) => String::from_utf8_lossy(rest).into_owned(),
        None => return,
    };
    let _ = jsonwebtoken::decode_header(&token);
    // As extraction hands it over: size and b64token characters checked first.
    let Ok(token) = gatehouse::auth::token::accept(token, 16 * 1024) else {
        return;
    };
    let token: BearerToken = token;
    let result = h.runtime.block_on(h.validator.validate(&token));
    if common::debug() {
        eprintln!(
            "validate: {:?}",
            result.as_ref().map(|v| v.claims.get("iss"))
        );
    }
    if let Ok(validated) = result {
        check_accepted(&validated.claims);
    }
});
