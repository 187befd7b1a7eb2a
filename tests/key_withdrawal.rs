//! Pulling a signing key ends the sessions it verified. Withdrawing a leaked key is how an
//! IdP answers a compromise, and a forger picks the token's `exp` and `sub`, so neither
//! expiry nor a revocation by subject reaches a session opened with it: when the key is
//! gone from the issuer's set, WebSockets it verified (directly, or through a ticket
//! issued for its token) get close 4401 "token key withdrawn" and streamed responses are
//! cut, while sessions verified by a key still published carry on.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use http_body_util::BodyExt;
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message;

fn config(issuer: &str, hub: &str, events: &str) -> String {
    format!(
        r#"
[[issuer]]
name = "idp"
issuer = "{issuer}"
audiences = ["api"]
algorithms = ["RS256"]
refresh = "1s"
discovery = true

[tickets]
ttl = "30s"

[[route]]
path = "/hub"
upstream = "{hub}"
websocket = true
tokens = ["header", "ticket"]

[[route]]
path = "/events"
upstream = "{events}"
"#
    )
}

fn token(key: &Key, issuer: &str, sub: &str) -> String {
    let mut claims = claims(issuer, "api", json!({}));
    claims["sub"] = json!(sub);
    mint(key, &claims)
}

async fn echo_once(client: &mut WsClient, text: &str) {
    client.send(Message::text(text)).await.unwrap();
    assert_eq!(next_message(client).await, Some(Message::text(text)));
}

#[tokio::test]
async fn withdrawing_a_key_ends_the_sessions_it_verified_and_no_others() {
    let (leaked, kept) = (Key::rsa("rsa1", "k1"), Key::rsa("rsa2", "k2"));
    let idp = Idp::start(&[Key::rsa("rsa1", "k1"), Key::rsa("rsa2", "k2")]).await;
    let hub = WsHub::start().await;
    let (events, _) = Upstream::endless_events().await;
    let proxy = TestProxy::start(&config(&idp.issuer(), &hub.url(), &events.url())).await;
    proxy.wait_ready().await;
    let ws = proxy.url("/hub").replacen("http", "ws", 1);
    let forged = token(&leaked, &idp.issuer(), "mallory");
    let honest = token(&kept, &idp.issuer(), "alice");

    let bearer_of = |t: &str| format!("Bearer {t}");
    let (mut direct, _) = ws_connect(&ws, &[("authorization", &bearer_of(&forged))])
        .await
        .unwrap();
    let (mut other, _) = ws_connect(&ws, &[("authorization", &bearer_of(&honest))])
        .await
        .unwrap();
    let ticket = {
        let request = http::Request::post(proxy.url("/.gatehouse/ticket"))
            .header("authorization", bearer_of(&forged))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let answer = send(request).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.json()["ticket"].as_str().unwrap().to_string()
    };
    let (mut ticketed, _) = ws_connect(&format!("{ws}?ticket={ticket}"), &[])
        .await
        .unwrap();
    let stream = {
        let request = http::Request::get(proxy.url("/events"))
            .header("authorization", bearer_of(&forged))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let response = client().request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body()
    };
    for c in [&mut direct, &mut other, &mut ticketed] {
        echo_once(c, "before").await;
    }

    // The IdP pulls the leaked key; gatehouse sees it at its next refresh (1 s).
    idp.set_keys(&[Key::rsa("rsa2", "k2")]);
    let withdrawn = Some((4401, "token key withdrawn".to_string()));
    assert_eq!(
        close_of(&mut direct, Duration::from_secs(5)).await,
        withdrawn
    );
    assert_eq!(
        close_of(&mut ticketed, Duration::from_secs(5)).await,
        withdrawn
    );
    let cut = tokio::time::timeout(Duration::from_secs(5), async {
        let mut body = stream;
        loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(_)) => return true,
                None => return false,
            }
        }
    })
    .await;
    assert_eq!(cut, Ok(true), "the stream was not cut");
    echo_once(&mut other, "still here").await;
    assert_eq!(
        proxy
            .metric("gatehouse_websocket_closes_total{reason=\"key_withdrawn\",route=\"/hub\"}")
            .await,
        2.0
    );
    let cuts = "gatehouse_stream_cuts_total{reason=\"key_withdrawn\",route=\"/events\"}";
    assert_eq!(proxy.metric(cuts).await, 1.0);
}

/// A reload that replaces an issuer's key ends the sessions the old key verified, though
/// open sessions otherwise finish on the config they started with.
#[tokio::test]
async fn a_reload_that_replaces_the_key_ends_its_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("issuer.pem");
    std::fs::copy(Key::rsa("rsa1", "k1").public_pem_path(), &key_file).unwrap();
    let hub = WsHub::start().await;
    let iss = "https://issuer.withdrawal.test";
    let toml = format!(
        r#"
{LOOPBACK_LISTENERS}
[reload]
watch = true
interval = "100ms"
[[issuer]]
name = "static"
issuer = "{iss}"
audiences = ["api"]
public_key_file = "{key}"
algorithms = ["RS256"]
[[route]]
path = "/hub"
upstream = "{hub}"
websocket = true
"#,
        key = key_file.display(),
        hub = hub.url()
    );
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(&config, toml).unwrap();
    let proxy = TestProxy::start_file(&config).await;
    let ws = proxy.url("/hub").replacen("http", "ws", 1);
    let bearer = format!("Bearer {}", token(&Key::rsa("rsa1", "k1"), iss, "mallory"));
    let (mut session, _) = ws_connect(&ws, &[("authorization", &bearer)])
        .await
        .unwrap();
    echo_once(&mut session, "before").await;

    let aside = dir.path().join("issuer.tmp");
    std::fs::copy(Key::rsa("rsa2", "k2").public_pem_path(), &aside).unwrap();
    std::fs::rename(&aside, &key_file).unwrap();
    let closed = close_of(&mut session, Duration::from_secs(5)).await;
    assert_eq!(closed, Some((4401, "token key withdrawn".to_string())));
}
