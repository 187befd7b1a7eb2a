//! WebSockets through the proxy with real tokio-tungstenite clients and a real echo hub:
//! every token source, single-use tickets (also under 50 concurrent redemptions), Origin
//! checks, first-message auth, close on expiry, close codes, fragments, and size limits.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

struct World {
    hub: WsHub,
    proxy: TestProxy,
}

async fn world() -> World {
    let hub = WsHub::start().await;
    let toml = format!(
        r#"
{HS_ISSUER}
leeway = "0s"

[identity]
headers = {{ "X-Auth-Subject" = "sub", "X-Auth-Roles" = "role" }}

[tickets]
ttl = "2s"
rate_limit_per_minute = 1000

[[route]]
path = "/hub"
upstream = "{up}"
websocket = true
tokens = ["header", "query:access_token", "subprotocol", "ticket"]
allowed_origins = ["https://app.example"]

[[route]]
path = "/fm"
upstream = "{up}"
websocket = true
tokens = ["first-message"]
first_message_timeout = "500ms"

[[route]]
path = "/small"
upstream = "{up}"
websocket = true
max_message_bytes = 1024

[[route]]
path = "/admins"
upstream = "{up}"
websocket = true
tokens = ["ticket", "header"]
require.roles = ["admin"]
"#,
        up = hub.url()
    );
    let proxy = TestProxy::start_with_secrets(&toml, &[("HS", SECRET)]).await;
    World { hub, proxy }
}

fn token_for(sub: &str, ttl_secs: u64, extra: serde_json::Value) -> String {
    let mut claims = claims(ISS, "api", extra);
    claims["sub"] = json!(sub);
    claims["exp"] = json!(now() + ttl_secs);
    mint_hs(&claims)
}

impl World {
    fn ws(&self, path: &str) -> String {
        format!("ws://{}{}", self.proxy.addr, path)
    }

    async fn ticket(&self, token: &str, route: Option<&str>) -> Answer {
        let body = route.map_or(String::new(), |r| json!({ "route": r }).to_string());
        let request = http::Request::post(self.proxy.url("/.gatehouse/ticket"))
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        send(request).await
    }

    async fn ticket_without_token(&self) -> Answer {
        let request = http::Request::post(self.proxy.url("/.gatehouse/ticket"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        send(request).await
    }

    async fn new_ticket(&self, token: &str, route: Option<&str>) -> String {
        let answer = self.ticket(token, route).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.json()["ticket"].as_str().unwrap().to_string()
    }
}

async fn echo_once(client: &mut WsClient, text: &str) {
    client.send(Message::text(text)).await.unwrap();
    assert_eq!(next_message(client).await, Some(Message::text(text)));
}

#[tokio::test]
async fn every_token_source_upgrades_and_the_hub_sees_identity_not_tokens() {
    let w = world().await;
    let token = token_for("alice", 600, json!({}));

    let (mut c, _) = ws_connect(
        &w.ws("/hub"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
    .unwrap();
    echo_once(&mut c, "via header").await;

    let (mut c, _) = ws_connect(&w.ws(&format!("/hub?id=1&access_token={token}")), &[])
        .await
        .unwrap();
    echo_once(&mut c, "via query").await;

    let (mut c, response) = ws_connect(
        &w.ws("/hub"),
        &[(
            "sec-websocket-protocol",
            &format!("bearer.{token}, chat.v1"),
        )],
    )
    .await
    .unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "chat.v1",
        "only the real subprotocol is echoed"
    );
    echo_once(&mut c, "via subprotocol").await;

    let ticket = w.new_ticket(&token, Some("/hub")).await;
    let (mut c, _) = ws_connect(&w.ws(&format!("/hub?ticket={ticket}")), &[])
        .await
        .unwrap();
    echo_once(&mut c, "via ticket").await;

    let (mut c, _) = ws_connect(&w.ws("/fm"), &[]).await.unwrap();
    c.send(Message::text(
        json!({"type": "auth", "token": token}).to_string(),
    ))
    .await
    .unwrap();
    echo_once(&mut c, "via first message").await;

    let conns = w.hub.conns();
    assert_eq!(conns.len(), 5);
    for conn in &conns {
        assert_eq!(conn.headers["x-auth-subject"], "alice", "{conn:?}");
        assert!(
            !conn.uri.contains(&token) && !conn.uri.contains(&ticket),
            "token in the hub's URI: {}",
            conn.uri
        );
        assert!(conn.headers.get("authorization").is_none());
        let all_headers = format!("{:?}", conn.headers);
        assert!(!all_headers.contains(&token), "token in the hub's headers");
    }
    assert_eq!(conns[1].uri, "/hub?id=1");
    assert_eq!(conns[2].headers["sec-websocket-protocol"], "chat.v1");
    assert!(
        w.proxy
            .metric("gatehouse_websocket_upgrades_total{result=\"ok\",route=\"/hub\"}")
            .await
            >= 4.0
    );
}

#[tokio::test]
async fn a_ticket_redeems_once_even_under_fifty_concurrent_upgrades() {
    let w = world().await;
    let token = token_for("alice", 600, json!({}));
    let ticket = w.new_ticket(&token, None).await;
    let url = w.ws(&format!("/hub?ticket={ticket}"));
    let winners = race_upgrades(std::iter::repeat_n(url, 50)).await;
    assert_eq!(
        winners.len(),
        1,
        "{} upgrades succeeded with one ticket",
        winners.len()
    );
    assert_eq!(w.hub.conns().len(), 1);
    assert!(
        w.proxy
            .metric("gatehouse_tickets_total{result=\"invalid_ticket\"}")
            .await
            >= 49.0
    );
}

#[tokio::test]
async fn tickets_expire_stay_on_their_route_and_respect_policy() {
    let w = world().await;
    let token = token_for("alice", 600, json!({}));

    let stale = w.new_ticket(&token, None).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        ws_connect(&w.ws(&format!("/hub?ticket={stale}")), &[])
            .await
            .unwrap_err(),
        401
    );

    let bound = w.new_ticket(&token, Some("/hub")).await;
    assert_eq!(
        ws_connect(&w.ws(&format!("/admins?ticket={bound}")), &[])
            .await
            .unwrap_err(),
        401
    );
    assert_eq!(
        ws_connect(&w.ws(&format!("/hub?ticket={bound}")), &[])
            .await
            .unwrap_err(),
        401,
        "spent on the wrong route"
    );

    // Policy at issue time: a non-admin cannot get a ticket for the admin route.
    let refused = w.ticket(&token, Some("/admins")).await;
    assert_eq!(refused.status, 403);
    // The path is read as a request's (pass 17): `/hub/../admins` is the admin route, and
    // an ambiguous spelling binds to nothing.
    let dotted = w.ticket(&token, Some("/hub/../admins")).await;
    assert_eq!(dotted.status, 403, "a dot segment chose the route");
    for ambiguous in [
        "/hub/..%2fadmins",
        "/hub;x=1",
        "/admins?/../hub",
        "/admins#/../hub",
    ] {
        assert_eq!(
            w.ticket(&token, Some(ambiguous)).await.status,
            400,
            "{ambiguous}"
        );
    }
    let admin = token_for("root", 600, json!({"role": "admin"}));
    let ticket = w.new_ticket(&admin, Some("/admins")).await;
    assert!(ws_connect(&w.ws(&format!("/admins?ticket={ticket}")), &[])
        .await
        .is_ok());

    let answer = w.ticket(&token, None).await;
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let body = answer.json();
    assert_eq!(body["expires_in"], 2);
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        get(&w.proxy.url("/.gatehouse/ticket"), &[]).await.status,
        405
    );
    let anonymous = send(
        http::Request::post(w.proxy.url("/.gatehouse/ticket"))
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test]
async fn the_ticket_endpoint_speaks_cors_for_allowed_origins_only() {
    let w = world().await;
    let preflight = |origin: &'static str| {
        http::Request::builder()
            .method("OPTIONS")
            .uri(w.proxy.url("/.gatehouse/ticket"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .body(http_body_util::Full::default())
            .unwrap()
    };
    let ok = send(preflight("https://app.example")).await;
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(ok
        .header("access-control-allow-headers")
        .unwrap()
        .contains("authorization"));
    assert_eq!(send(preflight("https://evil.example")).await.status, 403);
}

#[tokio::test]
async fn upgrades_from_other_origins_are_refused() {
    let w = world().await;
    let auth = format!("Bearer {}", token_for("alice", 600, json!({})));
    let evil = ws_connect(
        &w.ws("/hub"),
        &[("authorization", &auth), ("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(evil.unwrap_err(), 403);
    assert!(w.hub.conns().is_empty());
    assert!(ws_connect(
        &w.ws("/hub"),
        &[("authorization", &auth), ("origin", "https://app.example")]
    )
    .await
    .is_ok());
    assert!(
        ws_connect(&w.ws("/hub"), &[("authorization", &auth)])
            .await
            .is_ok(),
        "no Origin: not a browser"
    );
    assert_eq!(ws_connect(&w.ws("/hub"), &[]).await.unwrap_err(), 401);
}

#[tokio::test]
async fn first_message_auth_opens_no_upstream_until_a_valid_token_arrives() {
    let w = world().await;
    let (mut wrong, _) = ws_connect(&w.ws("/fm"), &[]).await.unwrap();
    wrong
        .send(Message::text(
            json!({"type": "auth", "token": "not.a.token"}).to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(
        close_of(&mut wrong, Duration::from_secs(3))
            .await
            .map(|c| c.0),
        Some(4401)
    );

    let (mut other, _) = ws_connect(&w.ws("/fm"), &[]).await.unwrap();
    other.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        close_of(&mut other, Duration::from_secs(3))
            .await
            .map(|c| c.0),
        Some(4401)
    );

    let (mut late, _) = ws_connect(&w.ws("/fm"), &[]).await.unwrap();
    let started = Instant::now();
    assert_eq!(
        close_of(&mut late, Duration::from_secs(3))
            .await
            .map(|c| c.0),
        Some(4401)
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(
        w.hub.conns().is_empty(),
        "the hub saw a connection before authentication"
    );

    let (mut good, _) = ws_connect(&w.ws("/fm"), &[]).await.unwrap();
    let token = token_for("carol", 600, json!({}));
    good.send(Message::text(
        json!({"type": "auth", "token": token}).to_string(),
    ))
    .await
    .unwrap();
    echo_once(&mut good, "authenticated").await;
    assert_eq!(w.hub.conns().len(), 1);
    assert_eq!(w.hub.conns()[0].headers["x-auth-subject"], "carol");
}

#[tokio::test]
async fn a_session_ends_with_4401_when_its_token_expires() {
    let w = world().await;
    let token = token_for("alice", 3, json!({}));
    let exp = now() + 3;
    let (mut c, _) = ws_connect(
        &w.ws("/hub"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
    .unwrap();
    echo_once(&mut c, "before expiry").await;
    let close = close_of(&mut c, Duration::from_secs(6)).await;
    assert_eq!(close, Some((4401, "token expired".to_string())));
    assert!(now() <= exp + 1, "closed more than 1 s after exp");
    let hub_closed = eventually(Duration::from_secs(2), || async { w.hub.conns()[0].ended }).await;
    assert!(hub_closed, "the upstream side stayed open");
    assert!(
        w.proxy
            .metric("gatehouse_websocket_closes_total{reason=\"token_expired\",route=\"/hub\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn close_codes_fragments_and_binary_frames_cross_intact() {
    let w = world().await;
    let auth = format!("Bearer {}", token_for("alice", 600, json!({})));

    let (mut c, _) = ws_connect(&w.ws("/hub"), &[("authorization", &auth)])
        .await
        .unwrap();
    c.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(
        next_message(&mut c).await,
        Some(Message::binary(vec![0u8, 1, 2, 255]))
    );
    // A text message in three fragments arrives whole.
    for (i, part) in ["frag", "ment", "ed"].iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(part.as_bytes().to_vec(), opcode, i == 2);
        c.send(Message::Frame(frame)).await.unwrap();
    }
    assert_eq!(
        next_message(&mut c).await,
        Some(Message::text("fragmented"))
    );
    c.close(Some(CloseFrame {
        code: CloseCode::from(4000),
        reason: "client bye".into(),
    }))
    .await
    .unwrap();
    let hub_got = eventually(Duration::from_secs(2), || async {
        w.hub.conns()[0].close_code == Some(4000)
    })
    .await;
    assert!(
        hub_got,
        "the hub did not receive the client's close code: {:?}",
        w.hub.conns()
    );

    let (mut c, _) = ws_connect(&w.ws("/hub"), &[("authorization", &auth)])
        .await
        .unwrap();
    c.send(Message::text("close:4001")).await.unwrap();
    assert_eq!(
        close_of(&mut c, Duration::from_secs(3)).await.map(|c| c.0),
        Some(4001)
    );
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009() {
    let w = world().await;
    let auth = format!("Bearer {}", token_for("alice", 600, json!({})));
    let (mut c, _) = ws_connect(&w.ws("/small"), &[("authorization", &auth)])
        .await
        .unwrap();
    echo_once(&mut c, &"a".repeat(1000)).await;
    c.send(Message::text("b".repeat(4096))).await.unwrap();
    assert_eq!(
        close_of(&mut c, Duration::from_secs(3)).await.map(|c| c.0),
        Some(1009)
    );
    assert!(eventually(Duration::from_secs(2), || async { w.hub.conns()[0].ended }).await);
}

#[tokio::test]
async fn the_ticket_endpoint_rate_limits_each_client_and_idle_sessions_end() {
    let hub = WsHub::start().await;
    let toml = format!(
        r#"
{HS_ISSUER}

[tickets]
rate_limit_per_minute = 2

[[route]]
path = "/hub"
upstream = "{up}"
websocket = true
idle_timeout = "500ms"
"#,
        up = hub.url()
    );
    let proxy = TestProxy::start_with_secrets(&toml, &[("HS", SECRET)]).await;
    let w = World { hub, proxy };
    // Anonymous and invalid requests from the same address are refused at once and count
    // against nobody: they cannot lock valid callers behind the same ingress out.
    for _ in 0..10 {
        assert_eq!(w.ticket_without_token().await.status, 401);
        assert_eq!(w.ticket("not-a-token", None).await.status, 401);
    }
    let token = token_for("alice", 600, json!({}));
    assert_eq!(w.ticket(&token, None).await.status, 201);
    assert_eq!(w.ticket(&token, None).await.status, 201);
    let limited = w.ticket(&token, None).await;
    assert_eq!(limited.status, 429);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // The limit is alice's, not the address's: bob, from the same address, still gets his.
    let bob = token_for("bob", 600, json!({}));
    assert_eq!(w.ticket(&bob, None).await.status, 201);
    assert_eq!(w.ticket_without_token().await.status, 401);

    let (mut c, _) = ws_connect(
        &w.ws("/hub"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
    .unwrap();
    echo_once(&mut c, "then silence").await;
    let started = Instant::now();
    assert_eq!(
        close_of(&mut c, Duration::from_secs(3)).await,
        Some((1001, "idle timeout".to_string()))
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn websocket_sessions_keep_their_connection_slot() {
    let hub = WsHub::start().await;
    let upstream = Upstream::echo().await;
    let toml = format!(
        "[limits]\nmax_connections = 2\n[[route]]\npath = \"/hub\"\nupstream = \"{}\"\nauth = \"none\"\nwebsocket = true\n\
         [[route]]\npath = \"/plain\"\nupstream = \"{}\"\nauth = \"none\"\n",
        hub.url(),
        upstream.url()
    );
    let proxy = TestProxy::start(&toml).await;
    let (first, _) = ws_connect(&format!("ws://{}/hub", proxy.addr), &[])
        .await
        .unwrap();
    let (mut second, _) = ws_connect(&format!("ws://{}/hub", proxy.addr), &[])
        .await
        .unwrap();
    assert_eq!(
        proxy.metric("gatehouse_connections_open").await,
        2.0,
        "upgraded connections still count"
    );
    // Both slots are held by the sessions: a third connection is turned away at once...
    let url = proxy.url("/plain");
    let refused = get(&url, &[]).await;
    assert_eq!(refused.status, 503, "a third connection was served");
    assert_eq!(refused.header("retry-after"), Some("1"));
    let fresh = refused.header("x-request-id").unwrap_or_default();
    assert_eq!(
        fresh.len(),
        36,
        "no fresh X-Request-Id on the 503: {fresh:?}"
    );
    assert_eq!(
        proxy
            .metric("gatehouse_limit_hits_total{limit=\"max_connections\"}")
            .await,
        1.0
    );
    // ...until a session ends and gives its slot back.
    second.close(None).await.unwrap();
    drop(second);
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(&url, &[]).await.status == 200
        })
        .await,
        "the freed slot was never given back"
    );
    drop(first);
}

/// A token whose payload is exactly `payload`, for number spellings serde would rewrite.
fn token_with_payload(payload: &str) -> String {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let signed = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(payload.as_bytes())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, signed.as_bytes());
    format!("{signed}.{}", b64(tag.as_ref()))
}

fn token_with_dates(sub: &str, dates: &str) -> String {
    token_with_payload(&format!(
        r#"{{"iss":"{ISS}","aud":"api","sub":"{sub}",{dates}}}"#
    ))
}

#[tokio::test]
async fn a_fractional_or_exponent_exp_still_closes_the_session_on_time() {
    let w = world().await;
    let exp = now() + 3;
    // RFC 7519 NumericDate: any JSON number. `{:e}` writes 1.764470403e9.
    let spellings = [format!("{exp}.5"), format!("{:e}", exp as f64)];
    let mut clients = Vec::new();
    for spelling in &spellings {
        let token = token_with_dates("alice", &format!(r#""exp":{spelling}"#));
        let (mut c, _) = ws_connect(
            &w.ws("/hub"),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await
        .unwrap();
        echo_once(&mut c, "before expiry").await;
        clients.push(c);
    }
    for (c, spelling) in clients.iter_mut().zip(&spellings) {
        let close = close_of(c, Duration::from_secs(6)).await;
        assert_eq!(
            close,
            Some((4401, "token expired".to_string())),
            "exp {spelling}"
        );
    }
    assert!(now() <= exp + 1, "closed more than 1 s after exp");
}

#[tokio::test]
async fn tickets_for_a_fractional_exp_live_their_full_ttl() {
    let w = world().await;
    for spelling in [
        format!("{}.25", now() + 600),
        format!("{:e}", (now() + 600) as f64),
    ] {
        let token = token_with_dates("alice", &format!(r#""exp":{spelling}"#));
        let answer = w.ticket(&token, Some("/hub")).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        assert_eq!(answer.json()["expires_in"], 2, "exp {spelling}");
        let ticket = answer.json()["ticket"].as_str().unwrap().to_string();
        let (mut c, _) = ws_connect(&w.ws(&format!("/hub?ticket={ticket}")), &[])
            .await
            .unwrap();
        echo_once(&mut c, "with a ticket").await;
    }
}

/// A token past `exp` but within the issuer's `leeway` still validates, but gets no ticket:
/// a ticket never outlives its token, and one with under a second left could not be used.
/// The caller is told `token_expired`, so it fetches a new token.
#[tokio::test]
async fn a_token_past_exp_within_leeway_gets_401_not_a_ticket_of_no_life() {
    let hub = WsHub::start().await;
    let toml = format!(
        r#"
{HS_ISSUER}
leeway = "60s"

[tickets]
ttl = "30s"
rate_limit_per_minute = 1000

[[route]]
path = "/hub"
upstream = "{up}"
websocket = true
tokens = ["header", "ticket"]
"#,
        up = hub.url()
    );
    let proxy = TestProxy::start_with_secrets(&toml, &[("HS", SECRET)]).await;
    let ticket = |token: String| {
        let request = http::Request::post(proxy.url("/.gatehouse/ticket"))
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        send(request)
    };
    for exp in [now() - 5, now()] {
        let token = token_with_dates("alice", &format!(r#""exp":{exp}"#));
        let answer = ticket(token.clone()).await;
        assert_eq!(
            answer.status,
            401,
            "exp now{:+}: {}",
            exp as i64 - now() as i64,
            answer.body
        );
        assert_eq!(answer.json()["error"], "token_expired");
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer realm=\"gatehouse\", error=\"invalid_token\"")
        );
        // The leeway still holds for the token itself.
        let (mut c, _) = ws_connect(
            &format!("ws://{}/hub", proxy.addr),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await
        .unwrap();
        echo_once(&mut c, "within leeway").await;
    }
    // A few seconds left: a ticket for those, never past exp.
    let exp = now() + 4;
    let answer = ticket(token_with_dates("alice", &format!(r#""exp":{exp}"#))).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let expires_in = answer.json()["expires_in"].as_u64().unwrap();
    assert!(
        (2..=exp - now()).contains(&expires_in),
        "expires_in {expires_in}"
    );
    let ticket = answer.json()["ticket"].as_str().unwrap().to_string();
    let (mut c, _) = ws_connect(&format!("ws://{}/hub?ticket={ticket}", proxy.addr), &[])
        .await
        .unwrap();
    echo_once(&mut c, "with a short ticket").await;
}

/// Dates are judged on the whole seconds as written. serde_json (and jsonwebtoken) read
/// `N.99999999` as the f64 `N + 1.0`, which let a token live a second past its `exp` and
/// refused one whose `nbf` or `iat` had come. The issuer's leeway here is 0.
#[tokio::test]
async fn a_date_of_n_point_nines_counts_as_n() {
    let w = world().await;
    // A fresh second: the one-second difference under test must not be crossed meanwhile.
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    tokio::time::sleep(
        Duration::from_millis(1010) - Duration::from_nanos(wall.subsec_nanos().into()),
    )
    .await;
    let n = now();
    let later = n + 600;
    for (dates, want) in [
        (format!(r#""exp":{}.99999999"#, n - 1), Err("token_expired")),
        (
            format!(r#""exp":{}99999999e-8"#, n - 1),
            Err("token_expired"),
        ),
        (format!(r#""exp":{later},"nbf":{n}.99999999"#), Ok(())),
        (format!(r#""exp":{later},"iat":{n}.99999999"#), Ok(())),
        (format!(r#""exp":{later},"iat":{n}99999999E-8"#), Ok(())),
        (
            format!(r#""exp":{later},"nbf":{}"#, n + 120),
            Err("token_not_yet_valid"),
        ),
        (
            format!(r#""exp":{later},"iat":99999999999999999999"#),
            Err("bad_date_claim"),
        ),
        (
            format!(r#""exp":{later},"nbf":1e300"#),
            Err("bad_date_claim"),
        ),
        (
            format!(r#""exp":{later},"iat":-0.5"#),
            Err("bad_date_claim"),
        ),
    ] {
        let token = token_with_dates("alice", &dates);
        let answer = w.ticket(&token, None).await;
        match want {
            Ok(()) => assert_eq!(answer.status, 201, "{dates}: {}", answer.body),
            Err(reason) => {
                assert_eq!(answer.status, 401, "{dates}: {}", answer.body);
                assert_eq!(answer.json()["error"], reason, "{dates}");
            }
        }
        let upgrade = ws_connect(
            &w.ws("/hub"),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        assert_eq!(upgrade.err(), want.err().map(|_| 401), "{dates}");
    }
}

#[tokio::test]
async fn absurd_date_claims_get_401_and_crash_nothing() {
    let w = world().await;
    let exp = now() + 600;
    let cases = [
        r#""exp":18446744073709551000"#.to_string(),
        r#""exp":18446744073709551615"#.to_string(),
        r#""exp":1.8e19"#.to_string(),
        r#""exp":253402300800"#.to_string(),
        r#""exp":1e300"#.to_string(),
        r#""exp":-1"#.to_string(),
        r#""exp":"2030-01-01""#.to_string(),
        format!(r#""exp":{exp},"iat":1e300"#),
        format!(r#""exp":{exp},"iat":-5"#),
        format!(r#""exp":{exp},"nbf":-5"#),
    ];
    for dates in &cases {
        let token = token_with_dates("mallory", dates);
        let refused = ws_connect(
            &w.ws("/hub"),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        assert_eq!(refused.err(), Some(401), "{dates}");
        let answer = w.ticket(&token, None).await;
        assert_eq!(answer.status, 401, "{dates}: {}", answer.body);
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer realm=\"gatehouse\", error=\"invalid_token\""),
            "{dates}"
        );
        assert_eq!(answer.json()["error"], "bad_date_claim", "{dates}");
    }
    // The positive control: the same shape with a sane exp passes, and sessions still run.
    let token = token_with_dates("alice", &format!(r#""exp":{exp},"iat":{}"#, now()));
    let (mut c, _) = ws_connect(
        &w.ws("/hub"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
    .unwrap();
    echo_once(&mut c, "sane").await;
}

/// The real binary (its access log is what is checked), first-message auth on `/fm`, an
/// admin token for revocations; returns it, its public and its admin address.
fn first_message_binary(dir: &std::path::Path, hub: &WsHub) -> (Proc, String, String) {
    let (admin_token, hmac) = (dir.join("admin"), dir.join("hmac"));
    std::fs::write(&admin_token, "admin-token-for-the-refusal-test").unwrap();
    std::fs::write(&hmac, SECRET).unwrap();
    let toml = format!(
        r#"
[listen]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
token_file = "{}"
[log]
format = "json"
[[issuer]]
name = "sts"
issuer = "{ISS}"
audiences = ["api"]
hmac_secret_file = "{}"
[[route]]
path = "/fm"
upstream = "{}"
websocket = true
tokens = ["first-message"]
"#,
        admin_token.display(),
        hmac.display(),
        hub.url()
    );
    let config = dir.join("gatehouse.toml");
    std::fs::write(&config, toml).unwrap();
    let (proc, addr) = Proc::start(&config);
    let admin = format!("http://{}", proc.admin);
    (proc, format!("ws://{addr}"), admin)
}

#[tokio::test]
async fn a_revoked_token_in_the_first_message_is_logged_and_counted_as_revoked() {
    let hub = WsHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (proc, ws, admin) = first_message_binary(dir.path(), &hub);
    let revoke = http::Request::post(format!("{admin}/revocations"))
        .header("authorization", "Bearer admin-token-for-the-refusal-test")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            json!({ "jti": "revoked-1" }).to_string(),
        )))
        .unwrap();
    assert_eq!(send(revoke).await.status, 204);

    let (mut client, _) = ws_connect(&format!("{ws}/fm"), &[]).await.unwrap();
    let token = token_for("dave", 600, json!({ "jti": "revoked-1" }));
    let auth = json!({"type": "auth", "token": token}).to_string();
    client.send(Message::text(auth)).await.unwrap();
    let closed = close_of(&mut client, Duration::from_secs(3)).await;
    assert_eq!(closed.map(|c| c.0), Some(4401));

    let metrics = get(&format!("{admin}/metrics"), &[]).await.body;
    assert!(
        metrics
            .lines()
            .any(|l| l == "gatehouse_auth_failures_total{reason=\"token_revoked\"} 1"),
        "{metrics}"
    );
    let (code, logs) = proc.terminate();
    assert_eq!(code, 0);
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("gatehouse::access") && l.contains("websocket_refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{logs}");
    assert!(
        refused[0].contains(r#""reason":"token_revoked""#),
        "{}",
        refused[0]
    );
    assert!(hub.conns().is_empty(), "a revoked caller reached the hub");
}
