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
                Some("opaque-for-orders") => json!({
                    "active": true, "sub": "olga", "scope": "orders", "aud": ["billing-api", "orders-api"],
                    "exp": now() + 3600,
                }),
                Some("opaque-for-billing") => json!({
                    "active": true, "sub": "bill", "scope": "orders", "aud": "billing-api",
                    "exp": now() + 3600,
                }),
                Some("opaque-naming-main") => json!({
                    "active": true, "sub": "mallory", "scope": "orders",
                    "iss": "https://main.example/", "exp": now() + 3600,
                }),
                Some("opaque-refresh") => json!({
                    "active": true, "sub": "alice", "scope": "orders",
                    "token_type": "refresh_token", "exp": now() + 3600,
                }),
                Some("opaque-hydra-refresh") => json!({
                    "active": true, "sub": "alice", "scope": "orders",
                    "token_use": "refresh_token", "exp": now() + 3600,
                }),
                Some("opaque-keycloak-refresh") => json!({
                    "active": true, "sub": "alice", "scope": "orders", "typ": "Refresh",
                    "exp": now() + 3600,
                }),
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
    proxy_with(introspect_url, upstream, "").await
}

async fn proxy_with(introspect_url: &str, upstream: &Upstream, extra: &str) -> TestProxy {
    let toml = format!(
        r#"
[[introspection]]
name = "idp"
url = "{introspect_url}"
client_id = "gatehouse"
client_secret_env = "CLIENT_SECRET"
cache = "60s"
{extra}

[identity]
headers = {{ "X-Auth-Subject" = "sub", "X-Auth-Scopes" = "scope", "X-Auth-Iss" = "iss" }}

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

/// RFC 7662 §4 leaves the audience to the resource server: with `audiences` set, a token
/// the same authorization server issued for another API is not active here, and neither
/// is one whose answer names no audience.
#[tokio::test]
async fn with_audiences_a_token_for_another_api_is_inactive() {
    let idp = idp(0).await;
    let upstream = Upstream::echo().await;
    let url = format!("{}/introspect", idp.server.url());
    let proxy = proxy_with(&url, &upstream, "audiences = [\"orders-api\"]").await;
    let mine = bearer(&proxy.url("/orders/1"), "opaque-for-orders").await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(upstream.last().headers["x-auth-subject"], "olga");
    for other in ["opaque-for-billing", "opaque-alice"] {
        let answer = bearer(&proxy.url("/orders/1"), other).await;
        assert_eq!(answer.status, 401, "{other}: {}", answer.body);
        assert_eq!(answer.json()["error"], "token_inactive", "{other}");
    }
    // Without `audiences`, the billing token passes: the setting is what refuses it.
    let open = proxy_with(&url, &upstream, "").await;
    assert_eq!(
        bearer(&open.url("/orders/1"), "opaque-for-billing")
            .await
            .status,
        200
    );
}

/// With `issuer`, an endpoint answers for that issuer only: an answer naming another `iss`
/// (a partner's endpoint claiming the main IdP, to meet a route's `iss` pin) is not active,
/// and one naming none gets the endpoint's. A refresh token is never an access token.
#[tokio::test]
async fn an_endpoints_issuer_binds_its_answers_and_refresh_tokens_are_inactive() {
    let idp = idp(0).await;
    let upstream = Upstream::echo().await;
    let url = format!("{}/introspect", idp.server.url());
    let bound = proxy_with(&url, &upstream, "issuer = \"https://as.example/\"").await;
    let mine = bearer(&bound.url("/orders/1"), "opaque-alice").await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(upstream.last().headers["x-auth-iss"], "https://as.example/");
    let foreign = bearer(&bound.url("/orders/1"), "opaque-naming-main").await;
    assert_eq!(foreign.status, 401, "{}", foreign.body);
    assert_eq!(foreign.json()["error"], "token_inactive");
    // Without `issuer`, the answer's `iss` stands as the endpoint wrote it.
    let open = proxy_with(&url, &upstream, "").await;
    let named = bearer(&open.url("/orders/1"), "opaque-naming-main").await;
    assert_eq!(named.status, 200, "{}", named.body);
    assert_eq!(
        upstream.last().headers["x-auth-iss"],
        "https://main.example/"
    );
    for proxy in [&bound, &open] {
        for refresh in [
            "opaque-refresh",
            "opaque-keycloak-refresh",
            "opaque-hydra-refresh",
        ] {
            let answer = bearer(&proxy.url("/orders/1"), refresh).await;
            assert_eq!(answer.status, 401, "{refresh}: {}", answer.body);
            assert_eq!(answer.json()["error"], "token_inactive", "{refresh}");
        }
    }
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

/// An IdP that answers `active: true` with `exp` exactly as given for `opaque-exp-<i>`,
/// holds answers for `opaque-crowd` until the gate opens, and counts calls per token.
struct HostileIdp {
    server: Upstream,
    calls: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    gate: tokio::sync::watch::Sender<bool>,
}

impl HostileIdp {
    async fn start(exps: Vec<serde_json::Value>) -> HostileIdp {
        let calls: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
        let (gate, opened) = tokio::sync::watch::channel(false);
        let (counter, exps) = (calls.clone(), Arc::new(exps));
        let server = Upstream::start(move |request| {
            let (counter, exps, mut opened) = (counter.clone(), exps.clone(), opened.clone());
            async move {
                let body = request.into_body().collect().await.unwrap().to_bytes();
                let form: HashMap<String, String> =
                    form_urlencoded::parse(&body).into_owned().collect();
                let token = form.get("token").cloned().unwrap_or_default();
                *counter.lock().unwrap().entry(token.clone()).or_default() += 1;
                let answer = if token == "opaque-crowd" {
                    opened.wait_for(|open| *open).await.unwrap();
                    json!({"active": true, "sub": "crowd", "scope": "orders", "exp": now() + 3600})
                } else if token == "opaque-alice" {
                    json!({"active": true, "sub": "alice", "scope": "orders", "exp": now() + 3600})
                } else if let Some(i) = token.strip_prefix("opaque-exp-") {
                    let exp = exps[i.parse::<usize>().unwrap()].clone();
                    json!({"active": true, "sub": "x", "scope": "orders", "exp": exp})
                } else {
                    json!({"active": false})
                };
                http::Response::new(full(answer.to_string()))
            }
        })
        .await;
        HostileIdp {
            server,
            calls,
            gate,
        }
    }

    fn calls(&self, token: &str) -> usize {
        self.calls.lock().unwrap().get(token).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.calls.lock().unwrap().values().sum()
    }

    async fn proxy(&self, upstream: &Upstream, extra: &str) -> TestProxy {
        let toml = format!(
            r#"
[[introspection]]
name = "idp"
url = "{}/introspect"
client_id = "gatehouse"
client_secret_env = "CLIENT_SECRET"
{extra}

[[route]]
path = "/orders"
upstream = "{}"
require.scopes = ["orders"]
"#,
            self.server.url(),
            upstream.url()
        );
        TestProxy::start_with_secrets(&toml, &[("CLIENT_SECRET", CLIENT_SECRET)]).await
    }
}

#[tokio::test]
async fn concurrent_requests_with_one_new_token_make_one_idp_call() {
    let idp = HostileIdp::start(vec![]).await;
    let upstream = Upstream::echo().await;
    let proxy = idp.proxy(&upstream, "").await;
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let url = proxy.url("/orders");
            tokio::spawn(async move { bearer(&url, "opaque-crowd").await.status.as_u16() })
        })
        .collect();
    let asked = eventually(Duration::from_secs(5), || async {
        idp.calls("opaque-crowd") >= 1
    })
    .await;
    assert!(asked, "the IdP was never asked");
    // Let the other requests pile up behind the first call; however many arrive in time,
    // the count below must stay 1 (late ones are cache hits).
    tokio::time::sleep(Duration::from_millis(500)).await;
    idp.gate.send(true).unwrap();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(
        idp.calls("opaque-crowd"),
        1,
        "30 concurrent requests with one token were not a single flight"
    );
}

#[tokio::test]
async fn made_up_tokens_cannot_flush_a_real_callers_cached_answer() {
    let idp = HostileIdp::start(vec![]).await;
    let upstream = Upstream::echo().await;
    let proxy = idp.proxy(&upstream, "cache_entries = 10").await;
    assert_eq!(
        bearer(&proxy.url("/orders"), "opaque-alice").await.status,
        200
    );
    // 45 misses stay inside the default call budget (50 at once).
    for i in 0..45 {
        let junk = format!("junk-{i}");
        assert_eq!(bearer(&proxy.url("/orders"), &junk).await.status, 401);
    }
    assert_eq!(
        bearer(&proxy.url("/orders"), "opaque-alice").await.status,
        200
    );
    assert_eq!(
        idp.calls("opaque-alice"),
        1,
        "junk tokens evicted alice's cached answer"
    );
    // Junk is remembered too, within its own bound: the last one is still a cache hit.
    assert_eq!(bearer(&proxy.url("/orders"), "junk-44").await.status, 401);
    assert_eq!(idp.calls("junk-44"), 1);
}

#[tokio::test]
async fn idp_calls_for_uncached_tokens_are_rate_limited_and_the_excess_is_503() {
    let idp = HostileIdp::start(vec![]).await;
    let upstream = Upstream::echo().await;
    let proxy = idp.proxy(&upstream, "max_calls_per_second = 5").await;
    assert_eq!(
        bearer(&proxy.url("/orders"), "opaque-alice").await.status,
        200
    );
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let url = proxy.url("/orders");
            tokio::spawn(async move { bearer(&url, &format!("random-{i}")).await })
        })
        .collect();
    let mut unavailable = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        match answer.status.as_u16() {
            401 => {}
            503 => {
                assert_eq!(answer.json()["error"], "introspection_unavailable");
                assert!(
                    answer.header("www-authenticate").is_none(),
                    "a 503 blames no token"
                );
                unavailable += 1;
            }
            other => panic!("a made-up token got {other}"),
        }
    }
    // The bucket holds 5 and refills at 5 a second: a bound on calls, not a timing claim.
    let allowed = 5 + (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    let made = idp.total() - 1;
    assert!(
        made <= allowed,
        "40 made-up tokens made {made} IdP calls (budget {allowed})"
    );
    assert!(unavailable > 0, "no miss was refused");
    // A real caller's cached answer does not need the budget.
    assert_eq!(
        bearer(&proxy.url("/orders"), "opaque-alice").await.status,
        200
    );
    assert_eq!(idp.calls("opaque-alice"), 1);
}

#[tokio::test]
async fn an_exp_that_is_not_a_sane_numeric_date_is_refused_not_taken_as_no_expiry() {
    let later = now() + 3600;
    let exps = vec![
        json!("never"),
        json!(1.5e12),
        json!(null),
        json!(later as f64 + 0.5),
        json!(later),
    ];
    let idp = HostileIdp::start(exps).await;
    let upstream = Upstream::echo().await;
    let proxy = idp.proxy(&upstream, "").await;
    for (i, what) in ["\"never\"", "1.5e12 (milliseconds)", "null"]
        .iter()
        .enumerate()
    {
        let answer = bearer(&proxy.url("/orders"), &format!("opaque-exp-{i}")).await;
        assert_eq!(answer.status, 503, "exp {what} was accepted");
        assert_eq!(answer.json()["error"], "introspection_unavailable");
    }
    // NumericDate allows fractions (RFC 7519 §2); integers pass as before.
    assert_eq!(
        bearer(&proxy.url("/orders"), "opaque-exp-3").await.status,
        200
    );
    assert_eq!(
        bearer(&proxy.url("/orders"), "opaque-exp-4").await.status,
        200
    );
}
