//! A Redis connection that stops answering is dropped and made anew. After a failover
//! behind a proxy or VIP, or a partition, the old sockets are silently dead (no FIN, no
//! RST) while new connections reach a Redis that answers; gatehouse must get back to it on
//! its own within a few seconds: for requests that need the store, and for the revocation
//! subscription that closes open WebSockets.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const ADMIN: &str = "admin-secret-for-tests";

/// `resync` is as long as it may be, so only the subscription can bring a revocation
/// within the test's few seconds.
fn config(hub: &WsHub, api: &Upstream, store: &str) -> String {
    format!(
        r#"
[admin]
addr = "127.0.0.1:0"
token_env = "ADMIN"

{HS_ISSUER}

[tickets]
store = "{store}"
rate_limit_per_minute = 100000

[revocation]
store = "{store}"
on_store_error = "deny"
resync = "60s"

[[route]]
path = "/hub"
upstream = "{hub}"
websocket = true

[[route]]
path = "/api"
upstream = "{api}"
"#,
        hub = hub.url(),
        api = api.url()
    )
}

async fn ticket_status(proxy: &TestProxy, token: &str) -> u16 {
    let request = http::Request::post(proxy.url("/.gatehouse/ticket"))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::default())
        .unwrap();
    send(request).await.status.as_u16()
}

/// Both a ticket (a Redis command) and a request (a synced revocation view) go through.
async fn works(proxy: &TestProxy, token: &str) -> bool {
    ticket_status(proxy, token).await == 201 && proxy.api_status(token).await == 200
}

/// The ids of the pub/sub clients Redis knows of (ids only grow).
async fn subscribers(redis: &RedisServer) -> Vec<u64> {
    let mut list = redis::cmd("CLIENT");
    list.arg("LIST").arg("TYPE").arg("pubsub");
    let text: String = redis.command(0, &list).await;
    text.lines()
        .filter_map(|line| line.strip_prefix("id=")?.split(' ').next()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn connections_that_went_silently_dead_are_replaced_and_revocations_flow_again() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let relay = Blackhole::start(redis.port).await;
    let (hub, api) = (WsHub::start().await, Upstream::echo().await);
    // G reaches Redis through the relay; H, which makes the revocation, directly.
    let g = TestProxy::replica(&config(&hub, &api, &relay.url(0)), ADMIN).await;
    let h = TestProxy::replica(&config(&hub, &api, &redis.url()), ADMIN).await;
    let (t, jti) = revocable_token("alice");
    let (other, _) = revocable_token("bob");
    assert!(works(&g, &other).await, "G does not work through the relay");
    let (mut socket, _) = ws_connect(
        &format!("ws://{}/hub", g.addr),
        &[("authorization", &format!("Bearer {t}"))],
    )
    .await
    .unwrap();
    let both = eventually(Duration::from_secs(5), || async {
        subscribers(&redis).await.len() == 2
    })
    .await;
    assert!(both, "G and H never both subscribed");
    let before_cut = subscribers(&redis).await.into_iter().max().unwrap_or(0);
    let accepted = relay.accepted();

    relay.cut_existing();

    // G's old connections never answer again; new ones do.
    let recovered = eventually(Duration::from_secs(10), || works(&g, &other)).await;
    assert!(
        recovered,
        "G did not get back to Redis on a new connection within 10 s"
    );
    let resubscribed = eventually(Duration::from_secs(10), || async {
        subscribers(&redis)
            .await
            .into_iter()
            .any(|id| id > before_cut)
    })
    .await;
    assert!(resubscribed, "G never subscribed again");
    assert!(relay.accepted() > accepted, "G opened no new connection");

    assert_eq!(h.revoke(ADMIN, json!({ "jti": jti })).await, 204);
    assert_eq!(
        close_of(&mut socket, Duration::from_secs(5)).await,
        Some((4401, "token revoked".to_string())),
        "the revoked token's WebSocket on G stayed open"
    );
    assert_eq!(
        g.api_status(&t).await,
        401,
        "G still accepts the revoked token"
    );
}

#[tokio::test]
async fn a_subscription_closed_by_redis_is_made_anew() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (hub, api) = (WsHub::start().await, Upstream::echo().await);
    let toml = config(&hub, &api, &redis.url());
    let (g, h) = (
        TestProxy::replica(&toml, ADMIN).await,
        TestProxy::replica(&toml, ADMIN).await,
    );
    let both = eventually(Duration::from_secs(5), || async {
        subscribers(&redis).await.len() == 2
    })
    .await;
    assert!(both, "G and H never both subscribed");
    let before = subscribers(&redis).await.into_iter().max().unwrap_or(0);

    let mut kill = redis::cmd("CLIENT");
    kill.arg("KILL").arg("TYPE").arg("pubsub");
    let killed: i64 = redis.command(0, &kill).await;
    assert_eq!(killed, 2);
    let again = eventually(Duration::from_secs(10), || async {
        subscribers(&redis)
            .await
            .into_iter()
            .filter(|id| *id > before)
            .count()
            == 2
    })
    .await;
    assert!(again, "a replica never subscribed again");

    let (t, jti) = revocable_token("carol");
    let (mut socket, _) = ws_connect(
        &format!("ws://{}/hub", g.addr),
        &[("authorization", &format!("Bearer {t}"))],
    )
    .await
    .unwrap();
    assert_eq!(h.revoke(ADMIN, json!({ "jti": jti })).await, 204);
    assert_eq!(
        close_of(&mut socket, Duration::from_secs(5)).await,
        Some((4401, "token revoked".to_string())),
        "the revocation did not reach G over its new subscription"
    );
}
