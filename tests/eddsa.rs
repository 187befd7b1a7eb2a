//! EdDSA (Ed25519) end to end: keys from a real JWKS server (`kty: OKP`, `crv: Ed25519`)
//! and from a PEM file, tokens minted by `gatehouse token`, and the keys that must not
//! verify anything (other curves, wrong sizes, an issuer that does not list EdDSA).

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use support::*;

fn config(issuer: &str, algorithms: &str, source: &str, upstream: &str) -> String {
    format!(
        r#"
[[issuer]]
name = "idp"
issuer = "{issuer}"
audiences = ["api"]
{algorithms}
{source}

[[route]]
path = "/"
upstream = "{upstream}"
"#
    )
}

#[tokio::test]
async fn ed25519_keys_from_a_jwks_verify_and_other_okp_keys_do_not() {
    let ed = Key::ed("ed1", "ed-1");
    let idp = Idp::start(&[ed.clone(), Key::rsa("rsa1", "k1")]).await;
    // Beside it, the same 32 bytes published as X25519 and as a P-256 OKP, and a short key.
    {
        let mut jwks = idp.jwks.lock().unwrap();
        let x = ed.jwk()["x"].clone();
        let keys = jwks["keys"].as_array_mut().unwrap();
        keys.push(json!({"kty": "OKP", "crv": "X25519", "x": x, "kid": "x25519"}));
        keys.push(json!({"kty": "OKP", "crv": "P-256", "x": x, "kid": "okp-p256"}));
        let short = URL_SAFE_NO_PAD.encode([9u8; 16]);
        keys.push(json!({"kty": "OKP", "crv": "Ed25519", "x": short, "kid": "short"}));
    }
    let upstream = Upstream::echo().await;
    let source = "discovery = true";
    let algs = "algorithms = [\"EdDSA\", \"RS256\"]";
    let proxy = TestProxy::start(&config(&idp.issuer(), algs, source, &upstream.url())).await;
    proxy.wait_ready().await;

    let claims = claims(&idp.issuer(), "api", json!({}));
    let ok = bearer(&proxy.url("/x"), &mint(&ed, &claims)).await;
    assert_eq!(ok.status, 200);
    assert_eq!(upstream.last().headers["x-auth-subject"], "alice");
    // The RSA key next to it still works: EdDSA is one more family, not a replacement.
    let rsa = mint(&Key::rsa("rsa1", "k1"), &claims);
    assert_eq!(bearer(&proxy.url("/x"), &rsa).await.status, 200);

    // A tampered payload, and the same signature under each refused key's kid.
    let token = mint(&ed, &claims);
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string().replace("alice", "admin"));
    assert_eq!(bearer(&proxy.url("/x"), &parts.join(".")).await.status, 401);
    for kid in ["x25519", "okp-p256", "short"] {
        let token = mint(&Key::ed("ed1", kid), &claims);
        let answer = bearer(&proxy.url("/x"), &token).await;
        assert_eq!(answer.status, 401, "kid {kid}");
    }
}

#[tokio::test]
async fn eddsa_must_be_listed_to_be_accepted() {
    let ed = Key::ed("ed1", "ed-1");
    let idp = Idp::start(std::slice::from_ref(&ed)).await;
    let upstream = Upstream::echo().await;
    // The default allow-list is RS256 and ES256.
    let toml = config(&idp.issuer(), "", "discovery = true", &upstream.url());
    let proxy = TestProxy::start(&toml).await;
    let token = mint(&ed, &claims(&idp.issuer(), "api", json!({})));
    let answer = bearer(&proxy.url("/x"), &token).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["error"], "disallowed_algorithm");
}

#[tokio::test]
async fn gatehouse_token_mints_with_an_ed25519_key_that_a_pem_file_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::echo().await;
    let source = format!(
        "public_key_file = {:?}\nprivate_key_file = {:?}",
        fixture("ed1.pub.pem"),
        fixture("ed1.pem")
    );
    let toml = config(
        "https://issuer.example/",
        "algorithms = [\"EdDSA\"]",
        &source,
        &upstream.url(),
    );
    let path = dir.path().join("ed.toml");
    std::fs::write(
        &path,
        format!("[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n{toml}"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["token", "-c", path.to_str().unwrap(), "--sub", "erin"])
        .env_remove("GATEHOUSE_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");

    let proxy = TestProxy::start(&toml).await;
    assert_eq!(bearer(&proxy.url("/x"), &token).await.status, 200);
    assert_eq!(upstream.last().headers["x-auth-subject"], "erin");
    // The PEM key verifies only its own signatures.
    let forged = format!(
        "{}.{}",
        token.rsplit_once('.').unwrap().0,
        URL_SAFE_NO_PAD.encode([0u8; 64])
    );
    assert_eq!(bearer(&proxy.url("/x"), &forged).await.status, 401);
}
