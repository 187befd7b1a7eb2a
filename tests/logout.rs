//! `POST /.gatehouse/logout`: a caller revokes its own token, or every older token of its
//! subject, on two replicas sharing a real Redis; open WebSockets of the revoked tokens
//! close with 4401 on the other replica; CORS, the per-subject rate limit, 401 without a
//! token, 405 for GET and 503 while the store is down.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use support::*;

const ISS: &str = "https://sts.example/";
const SECRET: &str = "0123456789abcdef0123456789abcdef";
const APP: &str = "https://app.example";

fn config(hub: &WsHub, api: &Upstream, store: &str, rate: u32) -> String {
    format!(
        r#"
[admin]
addr = "127.0.0.1:0"

[[issuer]]
name = "sts"
issuer = "{ISS}"
audiences = ["api"]
hmac_secret_env = "HS"

[logout]
rate_limit_per_minute = {rate}

[revocation]
store = "{store}"
on_store_error = "deny"
resync = "500ms"

[[route]]
path = "/hub"
upstream = "{hub}"
websocket = true
allowed_origins = ["{APP}"]

[[route]]
path = "/api"
upstream = "{api}"
"#,
        hub = hub.url(),
        api = api.url()
    )
}

async fn replica(toml: &str) -> TestProxy {
    let proxy = TestProxy::start_with_secrets(toml, &[("HS", SECRET)]).await;
    proxy.wait_ready().await;
    proxy
}

/// A token of `sub` issued at `iat`; `extra` overrides claims (null removes one).
fn token_at(sub: &str, iat: u64, extra: Value) -> String {
    let mut c = claims(ISS, "api", json!({ "sub": sub, "iat": iat }));
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    mint_with(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        &c,
    )
}

fn token(sub: &str) -> String {
    token_at(sub, now() - 10, json!({}))
}

async fn logout(
    proxy: &TestProxy,
    token: Option<&str>,
    body: &str,
    origin: Option<&str>,
) -> Answer {
    let mut request = http::Request::post(proxy.url("/.gatehouse/logout"));
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    if let Some(o) = origin {
        request = request.header("origin", o);
    }
    send(
        request
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
    .await
}

async fn api(proxy: &TestProxy, token: &str) -> Answer {
    bearer(&proxy.url("/api/x"), token).await
}

async fn two_replicas(redis: &RedisServer, rate: u32) -> (WsHub, Upstream, TestProxy, TestProxy) {
    let (hub, echo) = (WsHub::start().await, Upstream::echo().await);
    let toml = config(&hub, &echo, &redis.url(), rate);
    let (a, b) = (replica(&toml).await, replica(&toml).await);
    (hub, echo, a, b)
}

#[tokio::test]
async fn signing_out_revokes_this_token_everywhere_and_closes_its_websocket_on_the_other_replica() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (hub, _echo, a, b) = two_replicas(&redis, 100).await;
    let (mine, other) = (token("bob"), token("bob"));
    let (mut socket, _) = ws_connect(
        &format!("ws://{}/hub", b.addr),
        &[("authorization", &format!("Bearer {mine}"))],
    )
    .await
    .unwrap();

    let answer = logout(&a, Some(&mine), "", None).await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let close = close_of(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(close, Some((4401, "token revoked".to_string())));
    // The client's close and the upstream's end race each other; both must come.
    assert!(
        eventually(Duration::from_secs(2), || async { hub.conns()[0].ended }).await,
        "the upstream side stayed open"
    );

    let refused = api(&a, &mine).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["error"], "token_revoked");
    assert!(
        eventually(Duration::from_secs(5), || async {
            api(&b, &mine).await.status == 401
        })
        .await,
        "replica B still accepts the signed-out token"
    );
    // The subject's other tokens are untouched.
    assert_eq!(api(&a, &other).await.status, 200);
    assert_eq!(api(&b, &other).await.status, 200);
    // Signing out again with the revoked token is refused like any use of it.
    let again = logout(&b, Some(&mine), "", None).await;
    assert_eq!(again.status, 401);
    assert_eq!(again.json()["error"], "token_revoked");
}

#[tokio::test]
async fn everywhere_revokes_the_subjects_older_tokens_and_not_later_ones() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (_hub, _echo, a, b) = two_replicas(&redis, 100).await;
    let (mine, older, stranger) = (token("carol"), token("carol"), token("dave"));
    let (mut socket, _) = ws_connect(
        &format!("ws://{}/hub", b.addr),
        &[("authorization", &format!("Bearer {older}"))],
    )
    .await
    .unwrap();

    let answer = logout(&a, Some(&mine), r#"{"everywhere": true}"#, None).await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    let close = close_of(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(close, Some((4401, "token revoked".to_string())));
    assert_eq!(api(&a, &mine).await.status, 401);
    assert!(
        eventually(Duration::from_secs(5), || async {
            api(&b, &older).await.status == 401
        })
        .await,
        "an older token of the subject still works on replica B"
    );
    // A token issued after the sign-out (next sign-in) works; other subjects are untouched.
    let later = token_at("carol", now() + 2, json!({}));
    assert_eq!(api(&a, &later).await.status, 200);
    assert_eq!(api(&b, &later).await.status, 200);
    assert_eq!(api(&b, &stranger).await.status, 200);
}

#[tokio::test]
async fn a_token_without_jti_signs_out_only_everywhere() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (_hub, _echo, a, b) = two_replicas(&redis, 100).await;
    // Issued this very second: `before = now` alone would not cover it.
    let bare = token_at("erin", now(), json!({ "jti": null }));
    let refused = logout(&a, Some(&bare), "", None).await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("everywhere"), "{}", refused.body);
    assert_eq!(
        api(&a, &bare).await.status,
        200,
        "a refused sign-out revoked"
    );

    let answer = logout(&a, Some(&bare), r#"{"everywhere": true}"#, None).await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert_eq!(api(&a, &bare).await.status, 401);
    assert!(
        eventually(Duration::from_secs(5), || async {
            api(&b, &bare).await.status == 401
        })
        .await
    );
}

/// An IdP clock that runs ahead by more than a minute, within the issuer's `leeway`: the
/// presenting token is still covered; a 204 never leaves it working.
#[tokio::test]
async fn signing_out_everywhere_covers_a_token_from_an_idp_clock_far_ahead() {
    let hub = WsHub::start().await;
    let echo = Upstream::echo().await;
    let toml = config(&hub, &echo, "memory", 100).replace(
        "audiences = [\"api\"]",
        "audiences = [\"api\"]\nleeway = \"5m\"",
    );
    let proxy = replica(&toml).await;
    let ahead = token_at("gina", now() + 100, json!({ "jti": null }));
    assert_eq!(api(&proxy, &ahead).await.status, 200);
    let answer = logout(&proxy, Some(&ahead), r#"{"everywhere": true}"#, None).await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert_eq!(
        api(&proxy, &ahead).await.status,
        401,
        "signed out, still valid"
    );
}

#[tokio::test]
async fn no_token_is_401_get_is_405_and_bodies_are_checked() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (_hub, _echo, a, _b) = two_replicas(&redis, 100).await;
    let missing = logout(&a, None, "", None).await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"gatehouse\"")
    );
    let forged = format!("{}x", token("frank"));
    let invalid = logout(&a, Some(&forged), "", None).await;
    assert_eq!(invalid.status, 401);
    assert_eq!(invalid.json()["error"], "bad_signature");

    let t = token("frank");
    let got = bearer(&a.url("/.gatehouse/logout"), &t).await;
    assert_eq!(got.status, 405);
    assert_eq!(got.header("allow"), Some("POST, OPTIONS"));
    let unknown = logout(&a, Some(&t), r#"{"everywhere": true, "also": 1}"#, None).await;
    assert_eq!(unknown.status, 400);
    let huge = logout(&a, Some(&t), &" ".repeat(10_000), None).await;
    assert_eq!(huge.status, 413);
    assert_eq!(api(&a, &t).await.status, 200, "a refused sign-out revoked");
}

#[tokio::test]
async fn sign_outs_are_rate_limited_per_subject() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (_hub, _echo, a, _b) = two_replicas(&redis, 2).await;
    assert_eq!(logout(&a, Some(&token("gina")), "", None).await.status, 204);
    assert_eq!(logout(&a, Some(&token("gina")), "", None).await.status, 204);
    let limited = logout(&a, Some(&token("gina")), "", None).await;
    assert_eq!(limited.status, 429);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // Another subject is not held back by gina's count.
    assert_eq!(logout(&a, Some(&token("hank")), "", None).await.status, 204);
}

#[tokio::test]
async fn cors_preflight_and_request_from_an_allowed_origin_only() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (_hub, _echo, a, _b) = two_replicas(&redis, 100).await;
    let preflight = send(
        http::Request::options(a.url("/.gatehouse/logout"))
            .header("origin", APP)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("POST")
    );
    assert!(preflight
        .header("access-control-allow-headers")
        .unwrap()
        .contains("authorization"));

    let evil = token("ivan");
    let refused = logout(&a, Some(&evil), "", Some("https://evil.example")).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        api(&a, &evil).await.status,
        200,
        "a refused origin signed out"
    );

    let t = token("ivan");
    let answer = logout(&a, Some(&t), r#"{"everywhere": false}"#, Some(APP)).await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert_eq!(answer.header("access-control-allow-origin"), Some(APP));
    assert_eq!(answer.header("vary"), Some("Origin"));
    assert_eq!(api(&a, &t).await.status, 401);
}

#[tokio::test]
async fn a_store_outage_fails_closed() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (_hub, _echo, a, _b) = two_replicas(&redis, 100).await;
    let t = token("judy");
    redis.stop();
    assert!(
        eventually(Duration::from_secs(10), || async {
            logout(&a, Some(&t), "", None).await.status == 503
        })
        .await,
        "a sign-out during a store outage did not fail closed"
    );
}

/// A `jti` (and a subject) is unique only within its issuer, and revocations name none:
/// with a second issuer whose holders can choose their `jti` (an HMAC issuer here), a
/// sign-out could revoke another issuer's token that shares it. Such a sign-out endpoint
/// could never succeed, so the config that asks for one is refused, naming the fix; the
/// same config without `[logout]` starts and serves both issuers' tokens.
#[tokio::test]
async fn with_two_issuers_logout_is_a_config_error_that_names_the_fix() {
    let (hub, echo) = (WsHub::start().await, Upstream::echo().await);
    let partner_secret = "fedcba9876543210fedcba9876543210";
    let secrets = [("HS", SECRET), ("PARTNER", partner_secret)];
    let toml = format!(
        "{}\n[[issuer]]\nname = \"partner\"\nissuer = \"https://partner.example/\"\n\
         audiences = [\"api\"]\nhmac_secret_env = \"PARTNER\"\n",
        config(&hub, &echo, "memory", 100)
    );
    assert!(toml.contains("\n[logout]"), "the base config signs out");
    let refused = load(&toml, &secrets).err().unwrap_or_default();
    assert!(
        refused.contains(
            "logout: sign-out needs exactly one [[issuer]] or [[introspection]], this config has 2"
        ) && refused.contains("remove [logout]"),
        "{refused}"
    );

    let proxy = TestProxy::start_with_secrets(&strip_logout(&toml), &secrets).await;
    proxy.wait_ready().await;
    let mut partner = claims("https://partner.example/", "api", json!({ "jti": "p-1" }));
    partner["sub"] = json!("mallory");
    let partner = mint_with(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &jsonwebtoken::EncodingKey::from_secret(partner_secret.as_bytes()),
        &partner,
    );
    let own = token_at("alice", now() - 10, json!({ "jti": "a-1" }));
    assert_eq!(api(&proxy, &partner).await.status, 200);
    assert_eq!(api(&proxy, &own).await.status, 200);
}

/// `toml` without its `[logout]` table (up to the next table header).
fn strip_logout(toml: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in toml.lines() {
        if line.starts_with('[') {
            skipping = line.trim() == "[logout]";
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
