//! RFC 7662 introspection against a real test endpoint: active and inactive tokens, client
//! authentication, the cache (hits, bounded by `exp`), policy from introspected claims, and
//! an endpoint that is down.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::json;
use support::*;

const CLIENT_SECRET: &str = "introspection-client-secret";

/// The IdP's view of its tokens, and how often it was asked.
struct Idp {
    server: Upstream,
    calls: Arc<AtomicUsize>,
}

async fn idp(short_lived_exp: u64) -> Idp {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let server = Upstream::start(move |request| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let expected = format!(
                "Basic {}",
                base64_std(&format!("gatehouse:{CLIENT_SECRET}"))
            );
            if request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                != Some(expected.as_str())
            {
                return status(http::StatusCode::UNAUTHORIZED);
            }
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let form: HashMap<String, String> =
                form_urlencoded::parse(&body).into_owned().collect();
            let answer = match form.get("token").map(String::as_str) {
                Some("opaque-alice") => json!({
                    "active": true, "sub": "alice", "scope": "orders read", "client_id": "spa",
                    "exp": now() + 3600,
                }),
                Some("opaque-short") if now() < short_lived_exp => json!({
                    "active": true, "sub": "brief", "scope": "orders", "exp": short_lived_exp,
                }),
                Some("opaque-no-scope") => {
                    json!({ "active": true, "sub": "eve", "exp": now() + 3600 })
                }
                _ => json!({ "active": false }),
            };
            http::Response::new(full(answer.to_string()))
        }
    })
    .await;
    Idp { server, calls }
}

fn base64_std(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn proxy(introspect_url: &str, upstream: &Upstream) -> TestProxy {
    let toml = format!(
        r#"
[[introspection]]
name = "idp"
url = "{introspect_url}"
client_id = "gatehouse"
client_secret_env = "CLIENT_SECRET"
cache = "60s"

[identity]
headers = {{ "X-Auth-Subject" = "sub", "X-Auth-Scopes" = "scope" }}

[[route]]
path = "/orders"
upstream = "{up}"
require.scopes = ["orders"]
"#,
        up = upstream.url()
    );
    TestProxy::start_with_secrets(&toml, &[("CLIENT_SECRET", CLIENT_SECRET)]).await
}

#[tokio::test]
async fn active_tokens_pass_with_their_identity_and_inactive_ones_do_not() {
    let idp = idp(0).await;
    let upstream = Upstream::echo().await;
    let proxy = proxy(&format!("{}/introspect", idp.server.url()), &upstream).await;

    let answer = bearer(&proxy.url("/orders/1"), "opaque-alice").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let seen = upstream.last();
    assert_eq!(seen.headers["x-auth-subject"], "alice");
    assert_eq!(seen.headers["x-auth-scopes"], "orders read");
    assert!(seen.headers.get("authorization").is_none());

    let inactive = bearer(&proxy.url("/orders/1"), "opaque-unknown").await;
    assert_eq!(inactive.status, 401);
    assert_eq!(inactive.json()["error"], "token_inactive");
    assert_eq!(
        bearer(&proxy.url("/orders/1"), "opaque-no-scope")
            .await
            .status,
        403,
        "policy applies to introspected claims"
    );

    // A cache hit: the same token again does not ask the IdP; inactive answers are cached too.
    let before = idp.calls.load(Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(
            bearer(&proxy.url("/orders/2"), "opaque-alice").await.status,
            200
        );
        assert_eq!(
            bearer(&proxy.url("/orders/2"), "opaque-unknown")
                .await
                .status,
            401
        );
    }
    assert_eq!(
        idp.calls.load(Ordering::SeqCst),
        before,
        "the cache did not answer"
    );
}

#[tokio::test]
async fn the_cache_never_outlives_the_tokens_exp() {
    let exp = now() + 2;
    let idp = idp(exp).await;
    let upstream = Upstream::echo().await;
    let proxy = proxy(&format!("{}/introspect", idp.server.url()), &upstream).await;
    assert_eq!(
        bearer(&proxy.url("/orders"), "opaque-short").await.status,
        200
    );
    assert_eq!(idp.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        bearer(&proxy.url("/orders"), "opaque-short").await.status,
        200
    );
    assert_eq!(
        idp.calls.load(Ordering::SeqCst),
        1,
        "second request should hit the cache"
    );

    tokio::time::sleep(Duration::from_secs(exp.saturating_sub(now()) + 1)).await;
    assert_eq!(
        bearer(&proxy.url("/orders"), "opaque-short").await.status,
        401
    );
    assert_eq!(
        idp.calls.load(Ordering::SeqCst),
        2,
        "the expired answer was served from cache"
    );
}

#[tokio::test]
async fn an_endpoint_that_is_down_or_refuses_us_means_503_not_a_pass() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let upstream = Upstream::echo().await;
    let proxy_down = proxy(&format!("http://{dead}/introspect"), &upstream).await;
    let answer = bearer(&proxy_down.url("/orders"), "opaque-alice").await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.json()["error"], "introspection_unavailable");

    // Wrong client secret: the IdP says 401 to us, which is our problem, not the caller's.
    let idp = idp(0).await;
    let toml = format!(
        "[[introspection]]\nname = \"idp\"\nurl = \"{}/introspect\"\nclient_id = \"gatehouse\"\nclient_secret_env = \"S\"\n\
         [[route]]\npath = \"/\"\nupstream = \"{}\"\n",
        idp.server.url(),
        upstream.url()
    );
    let wrong = TestProxy::start_with_secrets(&toml, &[("S", "not-the-secret")]).await;
    assert_eq!(bearer(&wrong.url("/x"), "opaque-alice").await.status, 503);
    assert!(upstream.requests().is_empty());
}
