//! Key sets against a real IdP: discovery, rotation without restart, the unknown-kid
//! refresh limit, IdP outages, readiness, and the static key sources.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

fn config(issuer: &str, source: &str, upstream: &str) -> String {
    format!(
        r#"
[[issuer]]
name = "idp"
issuer = "{issuer}"
audiences = ["api"]
algorithms = ["RS256", "ES256"]
refresh = "1s"
{source}

[[route]]
path = "/"
upstream = "{upstream}"
"#
    )
}

async fn status_with(proxy: &TestProxy, key: &Key, issuer: &str) -> u16 {
    bearer(
        &proxy.url("/x"),
        &mint(key, &claims(issuer, "api", json!({}))),
    )
    .await
    .status
    .as_u16()
}

#[tokio::test]
async fn discovery_finds_keys_and_rotation_needs_no_restart() {
    let idp = Idp::start(&[Key::rsa("rsa1", "k1")]).await;
    let upstream = Upstream::echo().await;
    let proxy = TestProxy::start(&config(&idp.issuer(), "discovery = true", &upstream.url())).await;
    proxy.wait_ready().await;
    assert!(idp.hits("/.well-known/openid-configuration") >= 1);
    assert_eq!(
        status_with(&proxy, &Key::rsa("rsa1", "k1"), &idp.issuer()).await,
        200
    );

    // The IdP rotates: it publishes k2 and starts signing with it. No restart.
    idp.set_keys(&[Key::rsa("rsa1", "k1"), Key::rsa("rsa2", "k2")]);
    assert_eq!(
        status_with(&proxy, &Key::rsa("rsa2", "k2"), &idp.issuer()).await,
        200
    );
    assert_eq!(
        status_with(&proxy, &Key::ec("ec1", "k2"), &idp.issuer()).await,
        401,
        "k2 is RSA, not EC"
    );
    assert!(
        proxy
            .metric("gatehouse_jwks_refresh_total{issuer=\"idp\",result=\"ok\"}")
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn random_kids_cannot_make_gatehouse_hammer_the_idp() {
    let idp = Idp::start(&[Key::rsa("rsa1", "k1")]).await;
    let upstream = Upstream::echo().await;
    // A long periodic refresh, so every fetch counted below comes from unknown kids.
    let source = "jwks_url = \"ISSUER/jwks\"\nrefresh = \"1h\"".replace("ISSUER", &idp.issuer());
    let toml = config(&idp.issuer(), &source, &upstream.url()).replace("refresh = \"1s\"\n", "");
    let proxy = TestProxy::start(&toml).await;
    proxy.wait_ready().await;
    let before = idp.hits("/jwks");

    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let url = proxy.url("/x");
            let token = mint(
                &Key::rsa("rsa2", &format!("random-{i}")),
                &claims(&idp.issuer(), "api", json!({})),
            );
            tokio::spawn(async move { bearer(&url, &token).await.status.as_u16() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 401);
    }
    // A second wave inside the 30 s window fetches nothing at all.
    for i in 0..20 {
        let token = mint(
            &Key::rsa("rsa2", &format!("again-{i}")),
            &claims(&idp.issuer(), "api", json!({})),
        );
        assert_eq!(bearer(&proxy.url("/x"), &token).await.status, 401);
    }
    let fetched = idp.hits("/jwks") - before;
    assert_eq!(fetched, 1, "70 unknown kids caused {fetched} JWKS fetches");
    assert!(
        proxy
            .metric("gatehouse_jwks_refresh_total{issuer=\"idp\",result=\"rate_limited\"}")
            .await
            >= 1.0
    );
    // The positive control: a known kid still passes.
    assert_eq!(
        status_with(&proxy, &Key::rsa("rsa1", "k1"), &idp.issuer()).await,
        200
    );
}

#[tokio::test]
async fn when_the_idp_goes_down_the_last_good_keys_keep_serving() {
    let idp = Idp::start(&[Key::rsa("rsa1", "k1"), Key::ec("ec1", "e1")]).await;
    let upstream = Upstream::echo().await;
    let proxy = TestProxy::start(&config(&idp.issuer(), "discovery = true", &upstream.url())).await;
    proxy.wait_ready().await;
    idp.stop();

    let errors = "gatehouse_jwks_refresh_total{issuer=\"idp\",result=\"error\"}";
    let failed = eventually(Duration::from_secs(10), || async {
        proxy.metric(errors).await >= 1.0
    })
    .await;
    assert!(
        failed,
        "no failed refresh was counted after the IdP went down"
    );
    // Fresh tokens (new jti, so no cache) with known keys still pass, and readiness holds.
    assert_eq!(
        status_with(&proxy, &Key::rsa("rsa1", "k1"), &idp.issuer()).await,
        200
    );
    assert_eq!(
        status_with(&proxy, &Key::ec("ec1", "e1"), &idp.issuer()).await,
        200
    );
    assert_eq!(get(&proxy.admin_url("/readyz"), &[]).await.status, 200);
    let age = proxy
        .metric("gatehouse_jwks_last_success_age_seconds{issuer=\"idp\"}")
        .await;
    assert!(age >= 0.0, "age {age}");
}

#[tokio::test]
async fn readyz_waits_for_keys_and_requests_get_503_until_then() {
    let idp = Idp::start(&[]).await;
    let upstream = Upstream::echo().await;
    let proxy = TestProxy::start(&config(&idp.issuer(), "discovery = true", &upstream.url())).await;
    let not_ready = get(&proxy.admin_url("/readyz"), &[]).await;
    assert_eq!(not_ready.status, 503);
    assert!(not_ready.body.contains("idp"), "{}", not_ready.body);
    assert_eq!(
        status_with(&proxy, &Key::rsa("rsa1", "k1"), &idp.issuer()).await,
        503
    );
    assert_eq!(get(&proxy.admin_url("/healthz"), &[]).await.status, 200);

    idp.set_keys(&[Key::rsa("rsa1", "k1")]);
    proxy.wait_ready().await;
    assert_eq!(
        status_with(&proxy, &Key::rsa("rsa1", "k1"), &idp.issuer()).await,
        200
    );
}

#[tokio::test]
async fn static_key_sources_verify_without_any_idp() {
    let upstream = Upstream::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        json!({"keys": [Key::ec("ec1", "e1").jwk()]}).to_string(),
    )
    .unwrap();
    let iss = "https://static.example/";
    let cases = [
        (
            format!(
                "public_key_file = {:?}",
                Key::rsa("rsa1", "k1").public_pem_path()
            ),
            Key::rsa("rsa1", "any"),
        ),
        (
            format!(
                "public_key_file = {:?}",
                Key::ec("ec1", "e1").public_pem_path()
            ),
            Key::ec("ec1", "e1"),
        ),
        (format!("jwks_file = {jwks:?}"), Key::ec("ec1", "e1")),
    ];
    for (source, key) in cases {
        let proxy = TestProxy::start(&config(iss, &source, &upstream.url())).await;
        assert_eq!(
            get(&proxy.admin_url("/readyz"), &[]).await.status,
            200,
            "{source}"
        );
        assert_eq!(status_with(&proxy, &key, iss).await, 200, "{source}");
        assert_eq!(
            status_with(&proxy, &Key::rsa("attacker", "k1"), iss).await,
            401,
            "{source}"
        );
        proxy.shutdown().await;
    }
    let hs = "hmac_secret_env = \"HS\"\nalgorithms = [\"HS256\"]";
    let secret = "0123456789abcdef0123456789abcdef";
    let toml =
        config(iss, hs, &upstream.url()).replace("algorithms = [\"RS256\", \"ES256\"]\n", "");
    let proxy = TestProxy::start_with_secrets(&toml, &[("HS", secret)]).await;
    let good = mint_with(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        &claims(iss, "api", json!({})),
    );
    assert_eq!(bearer(&proxy.url("/x"), &good).await.status, 200);
    let requests = proxy
        .metric("gatehouse_requests_total{code=\"200\",method=\"GET\",route=\"/\"}")
        .await;
    assert_eq!(requests, 1.0);
}

/// A discovery server on loopback whose document is whatever `doc` makes of its own base
/// URL (`http://127.0.0.1:PORT`); it also serves `/jwks` with one RSA key.
async fn discovery_server(doc: fn(&str) -> serde_json::Value) -> (Upstream, String) {
    let key = Key::rsa("rsa1", "k1").jwk();
    let server = Upstream::start(move |request| {
        let key = key.clone();
        async move {
            let host = request.headers()["host"].to_str().unwrap().to_string();
            let body = match request.uri().path() {
                "/.well-known/openid-configuration" => doc(&format!("http://{host}")),
                "/jwks" => json!({ "keys": [key] }),
                _ => return status(http::StatusCode::NOT_FOUND),
            };
            http::Response::new(full(body.to_string()))
        }
    })
    .await;
    let issuer = server.url();
    (server, issuer)
}

/// Waits for the first failed refresh, then says whether the issuer got keys anyway.
async fn keys_refused(proxy: &TestProxy) -> bool {
    let errors = "gatehouse_jwks_refresh_total{issuer=\"idp\",result=\"error\"}";
    let failed = eventually(Duration::from_secs(10), || async {
        proxy.metric(errors).await >= 1.0
            || get(&proxy.admin_url("/readyz"), &[]).await.status == 200
    })
    .await;
    assert!(failed, "no refresh finished");
    get(&proxy.admin_url("/readyz"), &[]).await.status == 503
}

#[tokio::test]
async fn a_discovery_document_without_the_exact_issuer_is_refused() {
    let upstream = Upstream::echo().await;
    let docs: [fn(&str) -> serde_json::Value; 3] = [
        |base| json!({ "jwks_uri": format!("{base}/jwks") }),
        |base| json!({ "issuer": "https://other.example", "jwks_uri": format!("{base}/jwks") }),
        |base| json!({ "issuer": format!("{base}/"), "jwks_uri": format!("{base}/jwks") }),
    ];
    for (i, doc) in docs.into_iter().enumerate() {
        let (idp, issuer) = discovery_server(doc).await;
        let proxy = TestProxy::start(&config(&issuer, "discovery = true", &upstream.url())).await;
        assert!(keys_refused(&proxy).await, "document {i} was accepted");
        assert_eq!(
            status_with(&proxy, &Key::rsa("rsa1", "k1"), &issuer).await,
            503,
            "document {i}"
        );
        assert!(
            idp.requests().iter().all(|r| r.uri != "/jwks"),
            "document {i}"
        );
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn a_discovered_jwks_uri_must_be_on_the_issuers_host_unless_listed() {
    let upstream = Upstream::echo().await;
    // Same server, another host name: `localhost` is not the issuer's `127.0.0.1`.
    let doc = |base: &str| {
        json!({
            "issuer": base,
            "jwks_uri": format!("{}/jwks", base.replace("127.0.0.1", "localhost")),
        })
    };
    let (idp, issuer) = discovery_server(doc).await;
    let proxy = TestProxy::start(&config(&issuer, "discovery = true", &upstream.url())).await;
    assert!(
        keys_refused(&proxy).await,
        "a jwks_uri on another host was followed"
    );
    assert!(idp.requests().iter().all(|r| r.uri != "/jwks"));
    proxy.shutdown().await;

    let listed = "discovery = true\njwks_hosts = [\"localhost\"]";
    let proxy = TestProxy::start(&config(&issuer, listed, &upstream.url())).await;
    proxy.wait_ready().await;
    assert_eq!(
        status_with(&proxy, &Key::rsa("rsa1", "k1"), &issuer).await,
        200
    );
}

#[tokio::test]
async fn a_key_replaced_under_the_same_kid_ends_cached_validations() {
    let idp = Idp::start(&[Key::rsa("rsa1", "k1")]).await;
    let upstream = Upstream::echo().await;
    let proxy = TestProxy::start(&config(&idp.issuer(), "discovery = true", &upstream.url())).await;
    proxy.wait_ready().await;
    // One token, used twice: the second answer comes from the validated-token cache.
    let old = mint(
        &Key::rsa("rsa1", "k1"),
        &claims(&idp.issuer(), "api", json!({})),
    );
    assert_eq!(bearer(&proxy.url("/x"), &old).await.status, 200);
    assert_eq!(bearer(&proxy.url("/x"), &old).await.status, 200);

    // The IdP replaces the key but keeps publishing it as k1 (a compromised key rotated out).
    idp.set_keys(&[Key::rsa("rsa2", "k1")]);
    let new = Key::rsa("rsa2", "k1");
    let rotated = eventually(Duration::from_secs(10), || async {
        status_with(&proxy, &new, &idp.issuer()).await == 200
    })
    .await;
    assert!(rotated, "the new key was never picked up");
    assert_eq!(
        bearer(&proxy.url("/x"), &old).await.status,
        401,
        "a token signed with the replaced key still passed (from the cache)"
    );
}

/// Waits until gatehouse has fetched the key set at least twice more, so whatever the IdP
/// publishes now is what it holds.
async fn refreshed(idp: &Idp) {
    let before = idp.hits("/jwks");
    let seen = eventually(Duration::from_secs(10), || async {
        idp.hits("/jwks") >= before + 2
    })
    .await;
    assert!(seen, "gatehouse did not fetch the key set again");
}

/// RFC 7517 §4.2–4.3: a key published for encryption or key wrapping, or one that names an
/// algorithm gatehouse does not verify with, never verifies a signature.
#[tokio::test]
async fn a_key_published_for_another_job_never_verifies() {
    let idp = Idp::start(&[Key::rsa("rsa1", "k1")]).await;
    let upstream = Upstream::echo().await;
    let proxy = TestProxy::start(&config(&idp.issuer(), "discovery = true", &upstream.url())).await;
    proxy.wait_ready().await;
    let signer = Key::rsa("rsa2", "k2");
    for (field, value, verifies) in [
        ("alg", json!("RSA-OAEP"), false),
        ("alg", json!("RSA-OAEP-256"), false),
        ("alg", json!("ECDH-ES"), false),
        ("alg", json!("RS999"), false),
        ("alg", json!(""), false),
        ("use", json!("enc"), false),
        ("use", json!("ENC"), false),
        ("key_ops", json!(["encrypt", "wrapKey"]), false),
        // A member of the wrong JSON type is not an absent one.
        ("key_ops", json!(["encrypt", null]), false),
        ("key_ops", json!("verify"), false),
        ("alg", json!(["RSA-OAEP"]), false),
        ("alg", json!(null), false),
        ("use", json!(["enc"]), false),
        ("use", json!(null), false),
        // The positive controls: a signing key said so in each field.
        ("alg", json!("RS256"), true),
        ("key_ops", json!(["verify"]), true),
        ("use", json!("sig"), true),
    ] {
        let mut jwk = signer.jwk();
        jwk[field] = value.clone();
        *idp.jwks.lock().unwrap() = json!({"keys": [Key::rsa("rsa1", "k1").jwk(), jwk]});
        refreshed(&idp).await;
        let status = status_with(&proxy, &signer, &idp.issuer()).await;
        let expected = if verifies { 200 } else { 401 };
        assert_eq!(status, expected, "{field} = {value}");
    }
}

/// A key set the IdP serves is its word even when no key in it is usable: keys it stopped
/// publishing stop verifying (an IdP pulling a compromised key), and cached validations end.
#[tokio::test]
async fn a_key_set_without_usable_keys_withdraws_the_old_ones() {
    let idp = Idp::start(&[Key::rsa("rsa1", "k1")]).await;
    let upstream = Upstream::echo().await;
    let proxy = TestProxy::start(&config(&idp.issuer(), "discovery = true", &upstream.url())).await;
    proxy.wait_ready().await;
    let cached = mint(
        &Key::rsa("rsa1", "k1"),
        &claims(&idp.issuer(), "api", json!({})),
    );
    assert_eq!(bearer(&proxy.url("/x"), &cached).await.status, 200);

    let mut encryption = Key::rsa("rsa1", "k1").jwk();
    encryption["use"] = json!("enc");
    for published in [json!({"keys": []}), json!({"keys": [encryption]})] {
        *idp.jwks.lock().unwrap() = published.clone();
        refreshed(&idp).await;
        for token in [
            cached.clone(),
            mint(
                &Key::rsa("rsa1", "k1"),
                &claims(&idp.issuer(), "api", json!({})),
            ),
        ] {
            let answer = bearer(&proxy.url("/x"), &token).await;
            assert_eq!(answer.status, 401, "{published}: {}", answer.body);
            assert_eq!(answer.json()["error"], "unknown_key", "{published}");
        }
        // Publishing the key again brings it back.
        idp.set_keys(&[Key::rsa("rsa1", "k1")]);
        refreshed(&idp).await;
        assert_eq!(bearer(&proxy.url("/x"), &cached).await.status, 200);
    }
}
