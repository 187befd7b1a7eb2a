//! Several replicas sharing one real Redis: tickets redeem once across replicas,
//! revocations reach every replica (and close open WebSockets within 2 s), and a Redis
//! outage means 503 — never a silent fallback — until Redis returns.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const ADMIN: &str = "admin-secret-for-tests";

struct Backends {
    hub: WsHub,
    api: Upstream,
}

async fn backends() -> Backends {
    Backends {
        hub: WsHub::start().await,
        api: Upstream::echo().await,
    }
}

fn config(
    b: &Backends,
    tickets_store: &str,
    revocation_store: &str,
    on_store_error: &str,
) -> String {
    format!(
        r#"
[admin]
addr = "127.0.0.1:0"
token_env = "ADMIN"

{HS_ISSUER}

[tickets]
store = "{tickets_store}"
rate_limit_per_minute = 100000

[revocation]
store = "{revocation_store}"
on_store_error = "{on_store_error}"
resync = "500ms"

[[route]]
path = "/hub"
upstream = "{up}"
websocket = true
tokens = ["ticket", "header"]

[[route]]
path = "/api"
upstream = "{api}"
"#,
        up = b.hub.url(),
        api = b.api.url()
    )
}

async fn ticket(proxy: &TestProxy, token: &str) -> Answer {
    let request = http::Request::post(proxy.url("/.gatehouse/ticket"))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::default())
        .unwrap();
    send(request).await
}

async fn revoke(proxy: &TestProxy, body: serde_json::Value, bearer: Option<&str>) -> u16 {
    let mut request = http::Request::post(proxy.admin_url("/revocations"));
    if let Some(b) = bearer {
        request = request.header("authorization", format!("Bearer {b}"));
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    send(request).await.status.as_u16()
}

#[tokio::test]
async fn a_ticket_issued_on_one_replica_redeems_once_across_both() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let backends = backends().await;
    let toml = config(&backends, &redis.url(), &redis.url(), "deny");
    let (a, b) = (
        TestProxy::replica(&toml, ADMIN).await,
        TestProxy::replica(&toml, ADMIN).await,
    );
    let (t, _) = revocable_token("alice");
    let answer = ticket(&a, &t).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let value = answer.json()["ticket"].as_str().unwrap().to_string();

    let urls = (0..50).map(|i| {
        let proxy = if i % 2 == 0 { a.addr } else { b.addr };
        format!("ws://{proxy}/hub?ticket={value}")
    });
    let opened = race_upgrades(urls).await;
    assert_eq!(
        opened.len(),
        1,
        "one ticket opened {} WebSockets across replicas",
        opened.len()
    );
    assert_eq!(backends.hub.conns().len(), 1);
    assert_eq!(backends.hub.conns()[0].headers["x-auth-subject"], "alice");
}

#[tokio::test]
async fn a_revocation_on_one_replica_holds_on_all_and_closes_open_websockets() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let backends = backends().await;
    let toml = config(&backends, &redis.url(), &redis.url(), "deny");
    let (a, b) = (
        TestProxy::replica(&toml, ADMIN).await,
        TestProxy::replica(&toml, ADMIN).await,
    );
    let (t, jti) = revocable_token("bob");
    assert_eq!(b.api_status(&t).await, 200);
    let (mut socket, _) = ws_connect(
        &format!("ws://{}/hub", b.addr),
        &[("authorization", &format!("Bearer {t}"))],
    )
    .await
    .unwrap();

    assert_eq!(
        revoke(&a, json!({ "jti": jti }), None).await,
        401,
        "no admin bearer"
    );
    assert_eq!(revoke(&a, json!({ "jti": jti }), Some("wrong")).await, 401);
    let revoked_at = Instant::now();
    assert_eq!(revoke(&a, json!({ "jti": jti }), Some(ADMIN)).await, 204);
    let close = close_of(&mut socket, Duration::from_secs(3)).await;
    assert_eq!(close, Some((4401, "token revoked".to_string())));
    assert!(
        revoked_at.elapsed() < Duration::from_secs(2),
        "closed after {:?}",
        revoked_at.elapsed()
    );
    assert_eq!(a.api_status(&t).await, 401);
    assert_eq!(b.api_status(&t).await, 401);

    // A subject revocation covers the subject's earlier tokens, not later ones.
    let (older, _) = revocable_token("carol");
    assert_eq!(
        revoke(&b, json!({ "sub": "carol", "before": now() }), Some(ADMIN)).await,
        204
    );
    let refused = eventually(Duration::from_secs(2), || async {
        a.api_status(&older).await == 401
    })
    .await;
    assert!(refused, "replica A still accepts a revoked subject");
    let mut newer = claims(ISS, "api", json!({ "sub": "carol" }));
    newer["iat"] = json!(now() + 5);
    let newer = mint_hs(&newer);
    assert_eq!(a.api_status(&newer).await, 200);

    let listed = get(
        &a.admin_url("/revocations"),
        &[("authorization", &format!("Bearer {ADMIN}"))],
    )
    .await;
    assert_eq!(listed.status, 200);
    let entries = listed.json()["revocations"].as_array().unwrap().clone();
    assert!(
        entries.iter().any(|e| e["jti"] == jti.as_str()),
        "{entries:?}"
    );
    assert!(entries.iter().any(|e| e["sub"] == "carol"));
    assert!(
        backends.hub.conns()[0].ended,
        "the upstream side of the revoked session stayed open"
    );
}

#[tokio::test]
async fn a_redis_outage_is_503_and_service_resumes_when_redis_returns() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let backends = backends().await;
    let deny = TestProxy::replica(
        &config(&backends, &redis.url(), &redis.url(), "deny"),
        ADMIN,
    )
    .await;
    let allow = TestProxy::replica(
        &config(&backends, &redis.url(), &redis.url(), "allow"),
        ADMIN,
    )
    .await;
    let (t, _) = revocable_token("dave");
    assert_eq!(ticket(&deny, &t).await.status, 201);
    let unredeemed = ticket(&deny, &t).await.json()["ticket"]
        .as_str()
        .unwrap()
        .to_string();

    redis.stop();
    assert_eq!(
        ticket(&deny, &t).await.status,
        503,
        "a ticket was issued without its store"
    );
    let redeem = ws_connect(&format!("ws://{}/hub?ticket={unredeemed}", deny.addr), &[]).await;
    assert_eq!(redeem.unwrap_err(), 503);
    let not_ready = eventually(Duration::from_secs(5), || async {
        get(&deny.admin_url("/readyz"), &[]).await.status == 503
    })
    .await;
    assert!(not_ready, "/readyz stayed 200 with Redis down");
    let denied = eventually(Duration::from_secs(5), || async {
        deny.api_status(&t).await == 503
    })
    .await;
    assert!(denied, "on_store_error = deny still let requests through");
    assert_eq!(
        allow.api_status(&t).await,
        200,
        "on_store_error = allow refused a request"
    );
    assert!(
        deny.metric("gatehouse_store_errors_total{store=\"revocation\"}")
            .await
            >= 1.0
    );

    redis.resume();
    let back = eventually(Duration::from_secs(10), || async {
        get(&deny.admin_url("/readyz"), &[]).await.status == 200
            && ticket(&deny, &t).await.status == 201
    })
    .await;
    assert!(
        back,
        "gatehouse did not recover within 10 s of Redis returning"
    );
    assert_eq!(deny.api_status(&t).await, 200);
}

#[tokio::test]
async fn memory_and_redis_stores_behave_the_same() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let backends = backends().await;
    for store in ["memory", redis.url().as_str()] {
        let proxy = TestProxy::replica(&config(&backends, store, store, "deny"), ADMIN).await;
        let (t, jti) = revocable_token("erin");
        let value = ticket(&proxy, &t).await.json()["ticket"]
            .as_str()
            .unwrap()
            .to_string();
        let url = format!("ws://{}/hub?ticket={value}", proxy.addr);
        assert!(
            ws_connect(&url, &[]).await.is_ok(),
            "{store}: first redemption"
        );
        assert_eq!(
            ws_connect(&url, &[]).await.unwrap_err(),
            401,
            "{store}: second redemption"
        );
        assert_eq!(proxy.api_status(&t).await, 200, "{store}");
        assert_eq!(
            revoke(&proxy, json!({ "jti": jti }), Some(ADMIN)).await,
            204,
            "{store}"
        );
        assert_eq!(
            proxy.api_status(&t).await,
            401,
            "{store}: revoked token passed"
        );
        let value = ticket(&proxy, &t).await;
        assert_eq!(value.status, 401, "{store}: a revoked token got a ticket");
        proxy.shutdown().await;
    }
}

/// The subject revocations of `sub` listed by `proxy`, as `(before, expires)`.
async fn listed_subject(proxy: &TestProxy, sub: &str) -> Vec<(u64, u64)> {
    let listed = get(
        &proxy.admin_url("/revocations"),
        &[("authorization", &format!("Bearer {ADMIN}"))],
    )
    .await;
    assert_eq!(listed.status, 200);
    listed.json()["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["sub"] == sub)
        .map(|e| {
            (
                e["before"].as_u64().unwrap(),
                e["expires"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_later_revocation_never_undoes_an_earlier_one_in_memory() {
    let backends = backends().await;
    let proxy = TestProxy::replica(&config(&backends, "memory", "memory", "deny"), ADMIN).await;
    let (t, jti) = revocable_token("bob");
    assert_eq!(
        revoke(&proxy, json!({ "sub": "bob" }), Some(ADMIN)).await,
        204
    );
    assert_eq!(proxy.api_status(&t).await, 401);
    let first = listed_subject(&proxy, "bob").await;
    assert_eq!(first.len(), 1);

    assert_eq!(
        revoke(&proxy, json!({ "sub": "bob", "before": 1 }), Some(ADMIN)).await,
        204
    );
    assert_eq!(
        proxy.api_status(&t).await,
        401,
        "a narrower revocation gave bob's token back"
    );
    assert_eq!(listed_subject(&proxy, "bob").await, first);

    // A jti revocation posted twice keeps the later expiry.
    assert_eq!(
        revoke(&proxy, json!({ "jti": jti }), Some(ADMIN)).await,
        204
    );
    assert_eq!(
        revoke(&proxy, json!({ "jti": jti }), Some(ADMIN)).await,
        204
    );
    assert_eq!(proxy.api_status(&t).await, 401);
    assert_eq!(
        revoke(
            &proxy,
            json!({ "sub": "bob", "before": 253_402_300_800u64 }),
            Some(ADMIN)
        )
        .await,
        400,
        "a before past year 9999 is refused"
    );
}

#[tokio::test]
async fn a_later_revocation_never_undoes_an_earlier_one_across_redis_replicas() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let backends = backends().await;
    let toml = config(&backends, &redis.url(), &redis.url(), "deny");
    let (a, b) = (
        TestProxy::replica(&toml, ADMIN).await,
        TestProxy::replica(&toml, ADMIN).await,
    );
    let (t, _) = revocable_token("bob");
    assert_eq!(revoke(&a, json!({ "sub": "bob" }), Some(ADMIN)).await, 204);
    let first = listed_subject(&a, "bob").await;
    assert_eq!(first.len(), 1);
    let on_b = eventually(Duration::from_secs(2), || async {
        b.api_status(&t).await == 401
    })
    .await;
    assert!(on_b, "replica B never saw the revocation");

    // The narrower entry goes through the other replica: the store keeps the wider one.
    assert_eq!(
        revoke(&b, json!({ "sub": "bob", "before": 1 }), Some(ADMIN)).await,
        204
    );
    assert_eq!(b.api_status(&t).await, 401, "replica B gave bob back");
    assert_eq!(a.api_status(&t).await, 401, "replica A gave bob back");
    // After a resync (500 ms) both still hold the first, wider entry, and so does Redis.
    let c = TestProxy::replica(&toml, ADMIN).await;
    let synced = eventually(Duration::from_secs(5), || async {
        c.api_status(&t).await != 503
    })
    .await;
    assert!(synced, "replica C never read the store");
    assert_eq!(
        c.api_status(&t).await,
        401,
        "a new replica read the narrow entry"
    );
    for proxy in [&a, &b, &c] {
        assert_eq!(listed_subject(proxy, "bob").await, first);
    }
}

/// `on_store_error = "allow"` exists to keep serving through a Redis outage, so readiness
/// follows it: `/readyz` stays 200 and says it is degraded, `gatehouse_store_up` drops to
/// 0, and both recover when Redis returns. (`"deny"` turns `/readyz` to 503: see above.)
#[tokio::test]
async fn with_on_store_error_allow_a_redis_outage_keeps_readyz_200_and_shows_the_degradation() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let backends = backends().await;
    let allow = TestProxy::replica(
        &config(&backends, &redis.url(), &redis.url(), "allow"),
        ADMIN,
    )
    .await;
    let (t, _) = revocable_token("erin");
    let up = |store: &'static str| format!("gatehouse_store_up{{store=\"{store}\"}}");
    // Health follows a once-a-second ping: on a loaded machine the first one may still be
    // on its way when the replica starts answering.
    let healthy = eventually(Duration::from_secs(10), || async {
        let ready = get(&allow.admin_url("/readyz"), &[]).await;
        (ready.status.as_u16(), ready.body.as_str()) == (200, "ready\n")
    })
    .await;
    assert!(
        healthy,
        "/readyz never said plain \"ready\" while Redis was up"
    );
    assert_eq!(allow.metric(&up("revocation")).await, 1.0);
    assert_eq!(allow.metric(&up("tickets")).await, 1.0);

    redis.stop();
    let noticed = eventually(Duration::from_secs(10), || async {
        allow.metric(&up("revocation")).await == 0.0 && allow.metric(&up("tickets")).await == 0.0
    })
    .await;
    assert!(noticed, "gatehouse_store_up stayed 1 with Redis down");
    let ready = get(&allow.admin_url("/readyz"), &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(
        ready
            .body
            .starts_with("ready, degraded: shared store unreachable: ")
            && ready.body.contains("revocation")
            && ready.body.contains("tickets")
            && ready.body.contains("on_store_error = \"allow\""),
        "{}",
        ready.body
    );
    assert_eq!(allow.api_status(&t).await, 200, "allow refused a request");
    assert_eq!(
        ticket(&allow, &t).await.status,
        503,
        "a ticket without its store"
    );

    redis.resume();
    let back = eventually(Duration::from_secs(10), || async {
        get(&allow.admin_url("/readyz"), &[]).await.body == "ready\n"
            && allow.metric(&up("revocation")).await == 1.0
    })
    .await;
    assert!(
        back,
        "readiness did not recover within 10 s of Redis returning"
    );
}
