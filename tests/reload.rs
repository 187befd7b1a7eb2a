//! Reload without restart: a changed config file or issuer key file is picked up while a
//! WebSocket and a long SSE response stay open on the old generation; an invalid edit
//! changes nothing and is counted; SIGHUP reloads the real binary.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::convert::Infallible;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message;

const ISS: &str = "https://issuer.reload.test";

fn toml_for(api_upstream: &str, sse: &str, hub: &str, key_file: &Path, watch: bool) -> String {
    format!(
        r#"
{LOOPBACK_LISTENERS}
[shutdown]
grace = "1s"
[reload]
watch = {watch}
interval = "100ms"
[log]
format = "json"
[[issuer]]
name = "test"
issuer = "{ISS}"
audiences = ["api"]
public_key_file = "{key}"
algorithms = ["RS256"]
[[route]]
path = "/api"
upstream = "{api_upstream}"
[[route]]
path = "/sse"
upstream = "{sse}"
auth = "none"
timeout = "5s"
[[route]]
path = "/ws"
upstream = "{hub}"
auth = "none"
websocket = true
"#,
        key = key_file.display()
    )
}

/// An upstream that answers with its own name.
async fn named(name: &'static str) -> Upstream {
    Upstream::start(move |_| async move { http::Response::new(full(name)) }).await
}

/// An SSE upstream sending `data: tick N` every 100 ms until the client goes away.
async fn ticking() -> Upstream {
    Upstream::start(|_| async {
        let ticks = futures_util::stream::unfold(0u64, |i| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let event = Frame::data(Bytes::from(format!("data: tick {i}\n\n")));
            Some((Ok::<_, Infallible>(event), i + 1))
        });
        let mut response = http::Response::new(StreamBody::new(ticks).boxed());
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        response
    })
    .await
}

fn token(key: &Key) -> String {
    mint(key, &claims(ISS, "api", json!({})))
}

/// The body of `GET /api` with `token`, or the status when it is not 200.
async fn api(proxy: &str, token: &str) -> Result<String, u16> {
    let answer = bearer(&format!("{proxy}/api"), token).await;
    if answer.status == 200 {
        Ok(answer.body)
    } else {
        Err(answer.status.as_u16())
    }
}

fn write(path: &Path, contents: impl AsRef<[u8]>) {
    // Written aside and renamed, as editors and Kubernetes do: no half-written file is seen.
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, contents).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// Upstreams A and B, the SSE and WebSocket backends, and a config directory whose issuer
/// key file starts as rsa1's public key and whose `/api` route points at A.
struct World {
    a: Upstream,
    b: Upstream,
    sse: Upstream,
    hub: WsHub,
    watch: bool,
    dir: tempfile::TempDir,
}

impl World {
    async fn new(watch: bool) -> World {
        let world = World {
            a: named("A").await,
            b: named("B").await,
            sse: ticking().await,
            hub: WsHub::start().await,
            watch,
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::copy(Key::rsa("rsa1", "k1").public_pem_path(), world.key_file()).unwrap();
        world.route_api_to(&world.a);
        world
    }

    fn key_file(&self) -> std::path::PathBuf {
        self.dir.path().join("issuer.pem")
    }

    fn config_file(&self) -> std::path::PathBuf {
        self.dir.path().join("gatehouse.toml")
    }

    fn toml(&self, api: &Upstream) -> String {
        let (sse, hub) = (self.sse.url(), self.hub.url());
        toml_for(&api.url(), &sse, &hub, &self.key_file(), self.watch)
    }

    fn route_api_to(&self, api: &Upstream) {
        write(&self.config_file(), self.toml(api));
    }
}

#[tokio::test]
async fn changed_files_reload_while_open_connections_finish_on_the_old_config() {
    let world = World::new(true).await;
    let (a, b, sse, key_file) = (&world.a, &world.b, &world.sse, world.key_file());
    let (rsa1, rsa2) = (Key::rsa("rsa1", "k1"), Key::rsa("rsa2", "k2"));
    let proxy = TestProxy::start_file(&world.config_file()).await;
    let base = format!("http://{}", proxy.addr);
    let (old_token, new_token) = (token(&rsa1), token(&rsa2));
    assert_eq!(api(&base, &old_token).await, Ok("A".into()));
    assert_eq!(api(&base, &new_token).await, Err(401));

    // Open a WebSocket and a long SSE response on the first generation.
    let (mut ws, _) = ws_connect(&format!("ws://{}/ws", proxy.addr), &[])
        .await
        .unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Some(Message::text("before")));
    let sse_response = client()
        .get(proxy.url("/sse").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(sse_response.status(), 200);
    let mut events = sse_response.into_body();
    assert!(next_event(&mut events).await.starts_with("data: tick"));

    // 1. The issuer's key file is replaced: the new key validates, the old one no longer.
    std::fs::copy(rsa2.public_pem_path(), &key_file).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            api(&base, &new_token).await == Ok("A".into())
        })
        .await,
        "the new key file was never picked up"
    );
    assert_eq!(api(&base, &old_token).await, Err(401));

    // 2. The route's upstream moves: new requests reach B.
    world.route_api_to(b);
    assert!(
        eventually(Duration::from_secs(10), || async {
            api(&base, &new_token).await == Ok("B".into())
        })
        .await,
        "the new upstream was never used"
    );
    assert_eq!(
        proxy
            .metric("gatehouse_config_reloads_total{result=\"ok\"}")
            .await,
        2.0
    );

    // The WebSocket and the SSE response opened before both reloads carry on.
    ws.send(Message::text("after")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Some(Message::text("after")));
    let tick = next_event(&mut events).await;
    assert!(tick.starts_with("data: tick"), "{tick}");
    assert_eq!(sse.requests().len(), 1, "the SSE request was repeated");

    // 3. An invalid edit: nothing changes, the failure is counted.
    let broken = world.toml(a).replace(
        "auth = \"none\"\nwebsocket",
        "auth = \"sometimes\"\nwebsocket",
    );
    write(&world.config_file(), broken);
    assert!(
        eventually(Duration::from_secs(10), || async {
            proxy
                .metric("gatehouse_config_reloads_total{result=\"error\"}")
                .await
                == 1.0
        })
        .await,
        "the invalid edit was not counted"
    );
    assert_eq!(
        proxy
            .metric("gatehouse_config_last_reload_successful")
            .await,
        0.0
    );
    assert_eq!(api(&base, &new_token).await, Ok("B".into()));
    assert_eq!(api(&base, &old_token).await, Err(401));
    assert!(b.requests().len() >= 2);
    ws.send(Message::text("still")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Some(Message::text("still")));
    assert!(next_event(&mut events).await.starts_with("data: tick"));
    proxy.shutdown().await;
}

async fn next_event(events: &mut hyper::body::Incoming) -> String {
    let frame = tokio::time::timeout(Duration::from_secs(5), events.frame())
        .await
        .expect("no SSE event within 5s")
        .expect("the SSE stream ended")
        .unwrap();
    String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
}

#[tokio::test]
async fn sighup_reloads_the_running_binary_and_an_invalid_file_keeps_it_serving() {
    // watch = false: only the signal can make it reload.
    let world = World::new(false).await;
    let rsa1 = Key::rsa("rsa1", "k1");
    let (process, addr) = Proc::start(&world.config_file());
    let base = format!("http://{addr}");
    let token = token(&rsa1);
    assert_eq!(api(&base, &token).await, Ok("A".into()));

    world.route_api_to(&world.b);
    process.signal("HUP");
    assert!(
        eventually(Duration::from_secs(10), || async {
            api(&base, &token).await == Ok("B".into())
        })
        .await,
        "SIGHUP did not reload"
    );

    write(&world.config_file(), "this is = not [valid toml");
    process.signal("HUP");
    let metrics = format!("http://{}/metrics", process.admin);
    assert!(
        eventually(Duration::from_secs(10), || async {
            get(&metrics, &[])
                .await
                .body
                .contains("gatehouse_config_reloads_total{result=\"error\"} 1")
        })
        .await,
        "the failed reload was not counted"
    );
    assert_eq!(api(&base, &token).await, Ok("B".into()));
    let (code, logs) = process.terminate();
    assert_eq!(code, 0);
    assert!(
        logs.contains("config reload failed; still running the previous config"),
        "{logs}"
    );
    assert!(logs.contains("\"trigger\":\"SIGHUP\""), "{logs}");
}

#[tokio::test]
async fn rotated_secret_files_take_over_without_a_restart() {
    let api_upstream = named("A").await;
    let dir = tempfile::tempdir().unwrap();
    let (hmac_file, admin_file) = (dir.path().join("hmac"), dir.path().join("admin"));
    let (old_secret, new_secret) = ("o".repeat(32), "n".repeat(32));
    write(&hmac_file, format!("{old_secret}\n"));
    write(&admin_file, "old-admin-secret\n");
    let config_file = dir.path().join("gatehouse.toml");
    write(
        &config_file,
        format!(
            r#"
{LOOPBACK_LISTENERS}
token_file = "{admin}"
[reload]
interval = "100ms"
[[issuer]]
name = "hs"
issuer = "{ISS}"
audiences = ["api"]
hmac_secret_file = "{hmac}"
[[route]]
path = "/api"
upstream = "{up}"
"#,
            admin = admin_file.display(),
            hmac = hmac_file.display(),
            up = api_upstream.url()
        ),
    );
    let proxy = TestProxy::start_file(&config_file).await;
    let base = format!("http://{}", proxy.addr);
    let hs256 = |secret: &str| {
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        mint_with(&header, &key, &claims(ISS, "api", json!({})))
    };
    let (old_token, new_token) = (hs256(&old_secret), hs256(&new_secret));
    let revocations = proxy.admin_url("/revocations");
    assert_eq!(api(&base, &old_token).await, Ok("A".into()));
    assert_eq!(api(&base, &new_token).await, Err(401));
    assert_eq!(bearer(&revocations, "old-admin-secret").await.status, 200);

    write(&hmac_file, format!("{new_secret}\n"));
    write(&admin_file, "new-admin-secret\n");
    assert!(
        eventually(Duration::from_secs(10), || async {
            api(&base, &new_token).await == Ok("A".into())
                && bearer(&revocations, "new-admin-secret").await.status == 200
        })
        .await,
        "the rotated secrets were never picked up"
    );
    assert_eq!(api(&base, &old_token).await, Err(401));
    assert_eq!(bearer(&revocations, "old-admin-secret").await.status, 401);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_reload_keeps_the_rate_limiters_counts() {
    let hub = WsHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config_file, hmac_file) = (dir.path().join("gatehouse.toml"), dir.path().join("hmac"));
    let secret = "s".repeat(32);
    let toml = |ttl: &str| {
        format!(
            r#"
{LOOPBACK_LISTENERS}
[reload]
interval = "100ms"
[[issuer]]
name = "hs"
issuer = "{ISS}"
audiences = ["api"]
hmac_secret_file = "{hmac}"
[tickets]
ttl = "{ttl}"
rate_limit_per_minute = 2
[[route]]
path = "/ws"
upstream = "{hub}"
websocket = true
"#,
            hub = hub.url(),
            hmac = hmac_file.display()
        )
    };
    write(&hmac_file, &secret);
    write(&config_file, toml("30s"));
    let proxy = TestProxy::start_file(&config_file).await;
    let token = {
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        mint_with(&header, &key, &claims(ISS, "api", json!({})))
    };
    let ticket = || async {
        let request = http::Request::post(proxy.url("/.gatehouse/ticket"))
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        send(request).await.status.as_u16()
    };
    assert_eq!(ticket().await, 201);
    assert_eq!(ticket().await, 201);
    assert_eq!(ticket().await, 429);

    let reloads = "gatehouse_config_reloads_total{result=\"ok\"}";
    let before = proxy.metric(reloads).await;
    write(&config_file, toml("20s"));
    assert!(
        eventually(Duration::from_secs(10), || async {
            proxy.metric(reloads).await > before
        })
        .await,
        "the edit was never reloaded"
    );
    assert_eq!(
        ticket().await,
        429,
        "the reload gave back the spent tickets"
    );
    proxy.shutdown().await;
}

/// A `jwks_file` is followed like the config (README, "Issuer key sources"): replacing it
/// rotates the keys without a restart.
#[tokio::test]
async fn a_replaced_jwks_file_rotates_the_keys() {
    let world = World::new(true).await;
    let jwks = world.dir.path().join("jwks.json");
    let (rsa1, rsa2) = (Key::rsa("rsa1", "k1"), Key::rsa("rsa2", "k2"));
    let document = |key: &Key| json!({ "keys": [key.jwk()] }).to_string();
    write(&jwks, document(&rsa1));
    let text = world.toml(&world.a).replace(
        &format!("public_key_file = \"{}\"", world.key_file().display()),
        &format!("jwks_file = \"{}\"", jwks.display()),
    );
    write(&world.config_file(), text);
    let proxy = TestProxy::start_file(&world.config_file()).await;
    let base = format!("http://{}", proxy.addr);
    let (old_token, new_token) = (token(&rsa1), token(&rsa2));
    assert_eq!(api(&base, &old_token).await, Ok("A".into()));
    assert_eq!(api(&base, &new_token).await, Err(401));

    write(&jwks, document(&rsa2));
    assert!(
        eventually(Duration::from_secs(10), || async {
            api(&base, &new_token).await == Ok("A".into())
        })
        .await,
        "the new jwks_file was never picked up"
    );
    assert_eq!(api(&base, &old_token).await, Err(401));
    proxy.shutdown().await;
}
