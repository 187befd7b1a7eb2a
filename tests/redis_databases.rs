//! Deployments on different databases of one Redis server keep their revocations apart.
//! Redis pub/sub ignores the database number, so this holds only if the channel is named
//! for the database and a message can do no more than make a replica re-read its own.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message;

const ADMIN: &str = "admin-secret-for-tests";
/// 9999-12-31T23:59:59Z, the latest `before` and `expires` there are.
const FOREVER: u64 = 253_402_300_799;

fn config(hub: &WsHub, api: &Upstream, store: &str) -> String {
    format!(
        r#"
[admin]
addr = "127.0.0.1:0"
token_env = "ADMIN"

{HS_ISSUER}

[revocation]
store = "{store}"
resync = "500ms"

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

fn publish(channel: &str, entry: serde_json::Value) -> redis::Cmd {
    let mut cmd = redis::cmd("PUBLISH");
    cmd.arg(channel).arg(entry.to_string());
    cmd
}

#[tokio::test]
async fn a_revocation_in_one_database_is_never_applied_by_a_deployment_on_another() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (hub, api) = (WsHub::start().await, Upstream::echo().await);
    // Deployment A: two replicas on database 0. Deployment B: one on database 1. Same
    // issuer, so the same subjects and even the same jti exist in both.
    let a_toml = config(&hub, &api, &redis.url_db(0));
    let (a1, a2) = (
        TestProxy::replica(&a_toml, ADMIN).await,
        TestProxy::replica(&a_toml, ADMIN).await,
    );
    let b = TestProxy::replica(&config(&hub, &api, &redis.url_db(1)), ADMIN).await;

    let (alice, alice_jti) = revocable_token("alice");
    let (carol, carol_jti) = revocable_token("carol");
    assert_eq!(a2.api_status(&alice).await, 200);
    assert_eq!(b.api_status(&alice).await, 200);
    let (mut socket, _) = ws_connect(
        &format!("ws://{}/hub", a2.addr),
        &[("authorization", &format!("Bearer {alice}"))],
    )
    .await
    .unwrap();

    // B signs alice out everywhere, in B.
    assert_eq!(b.revoke(ADMIN, json!({ "jti": alice_jti })).await, 204);
    assert_eq!(b.revoke(ADMIN, json!({ "sub": "alice" })).await, 204);
    assert_eq!(b.api_status(&alice).await, 401, "B's own revocation");

    // Any client of the server, on any database, publishes on the channel names: the
    // unqualified one of earlier versions, and A's own, naming entries A never made.
    let forged = [
        json!({ "sub": "carol", "before": FOREVER, "expires": FOREVER }),
        json!({ "jti": carol_jti, "expires": FOREVER }),
        json!({ "jti": alice_jti, "expires": FOREVER }),
    ];
    for channel in ["gatehouse:revocations", "gatehouse:revocations:db0"] {
        for entry in &forged {
            let _: i64 = redis.command(9, &publish(channel, entry.clone())).await;
        }
    }

    // A barrier: A's own revocation, made on A1, reaches A2 after every message above
    // (one server, one subscription, in order), and after B's, were they on one channel.
    let (zed, zed_jti) = revocable_token("zed");
    assert_eq!(a1.revoke(ADMIN, json!({ "jti": zed_jti })).await, 204);
    let seen = eventually(Duration::from_secs(5), || async {
        a2.api_status(&zed).await == 401
    })
    .await;
    assert!(seen, "A2 never applied A1's revocation");

    for proxy in [&a1, &a2] {
        assert_eq!(
            proxy.api_status(&alice).await,
            200,
            "alice was revoked in A by B's sign-out or a PUBLISH"
        );
        assert_eq!(
            proxy.api_status(&carol).await,
            200,
            "a PUBLISH revoked carol in A"
        );
        let listed = get(
            &proxy.admin_url("/revocations"),
            &[("authorization", &format!("Bearer {ADMIN}"))],
        )
        .await;
        assert_eq!(
            listed.json()["revocations"],
            json!([{ "jti": zed_jti, "expires": listed.json()["revocations"][0]["expires"] }]),
            "A lists revocations A never made"
        );
    }
    socket.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        next_message(&mut socket).await,
        Some(Message::text("still here")),
        "alice's WebSocket on A was closed by B's sign-out"
    );

    // A's database holds only A's entry; B's holds B's.
    let keys = |db| {
        let redis = &redis;
        async move {
            let mut scan = redis::cmd("KEYS");
            scan.arg("gatehouse:revoked:*");
            let mut keys: Vec<String> = redis.command(db, &scan).await;
            keys.sort();
            keys
        }
    };
    assert_eq!(
        keys(0).await,
        vec![format!("gatehouse:revoked:jti:{zed_jti}")]
    );
    assert_eq!(keys(1).await.len(), 2);
}
