//! The real `@microsoft/signalr` JavaScript client through gatehouse, against a SignalR hub
//! written on Node's `http` + `ws` (`tests/signalr/`). The client negotiates with
//! `Authorization: Bearer` and opens the WebSocket with `?id=...&access_token=...` exactly as
//! it does in a browser (and, in its Node mode, with the header instead); the hub records what
//! reached it, and the tests check it saw the caller's identity and never the token in a URL.
//!
//! Needs `node` and the packages `npm ci` installs in `tests/signalr` (both from
//! `.ci/setup`). Without them the tests are skipped with a note on stderr, except under
//! `CI=true`, where they fail.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const SUBJECT: &str = "signalr-user";

struct ClientRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl ClientRun {
    /// The JSON result line the client prints on success.
    fn result(&self) -> Value {
        assert!(
            self.status.success(),
            "client.js failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        let line = self.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("client.js printed no JSON result ({e}): {}", self.stdout))
    }
}

/// Runs `node client.js <proxy> <token> <mode>` off the async runtime (so the in-process
/// proxy keeps serving), killing it after 30 s; the client itself gives up after 15 s.
async fn run_client(proxy: String, token: String, mode: &'static str) -> ClientRun {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new("node")
            .args(["client.js", &proxy, &token, mode])
            .current_dir(signalr_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node client.js");
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "client.js still running after 30s; stderr so far:\n{}",
                    stderr.join().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        ClientRun {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    })
    .await
    .unwrap()
}

fn token_for(sub: &str) -> String {
    let mut claims = claims(ISS, "api", json!({}));
    claims["sub"] = json!(sub);
    mint_hs(&claims)
}

async fn proxy_for(hub: &NodeHub, upstream_auth: &str) -> TestProxy {
    let toml = format!(
        r#"
{HS_ISSUER}

[identity]
headers = {{ "X-Auth-Subject" = "sub", "X-Auth-Roles" = "role" }}

[[route]]
path = "/hub"
upstream = "{up}"
websocket = true
tokens = ["header", "query:access_token"]
upstream_auth = "{upstream_auth}"
"#,
        up = hub.url()
    );
    TestProxy::start_with_secrets(&toml, &[("HS", SECRET)]).await
}

/// What one SignalR session through gatehouse produced.
struct Session {
    token: String,
    /// The client's JSON result line.
    result: Value,
    /// The hub's `/__seen`.
    seen: Value,
}

/// Hub, proxy, one `client.js` run in `mode`; checks what holds in every configuration:
/// the message came back for the token's subject, the hub saw one negotiate and one upgrade,
/// both with `X-Auth-Subject`, and no token or `access_token` in any URL it received.
async fn session(mode: &'static str, upstream_auth: &str) -> Session {
    let hub = NodeHub::start(&[], &[]);
    let proxy = proxy_for(&hub, upstream_auth).await;
    let token = token_for(SUBJECT);
    let run = run_client(proxy.url(""), token.clone(), mode).await;
    let result = run.result();
    assert!(
        !run.stdout.contains(&token) && !run.stderr.contains(&token),
        "client.js printed the token"
    );

    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["mode"], mode);
    assert_eq!(
        result["signalrVersion"],
        pinned()["@microsoft/signalr"],
        "not the pinned @microsoft/signalr"
    );
    assert_eq!(result["user"], SUBJECT, "ReceiveMessage user: {result}");
    assert_eq!(result["text"], "hello", "{result}");
    assert_eq!(result["upgrades"].as_array().unwrap().len(), 1, "{result}");

    let seen = hub.seen().await;
    let requests = seen["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "one negotiate, one upgrade: {seen:#}");
    let (negotiate, upgrade) = (&requests[0], &requests[1]);
    assert_eq!(negotiate["kind"], "http", "{seen:#}");
    assert_eq!(negotiate["method"], "POST");
    assert_eq!(negotiate["url"], "/hub/negotiate?negotiateVersion=1");
    assert_eq!(upgrade["kind"], "upgrade", "{seen:#}");
    assert_eq!(upgrade["method"], "GET");
    let id = upgrade["url"]
        .as_str()
        .unwrap()
        .strip_prefix("/hub?id=")
        .unwrap_or_else(|| panic!("upgrade URL: {}", upgrade["url"]));
    assert!(
        !id.is_empty() && !id.contains('&'),
        "the upgrade URL must carry only id: {}",
        upgrade["url"]
    );
    for request in requests {
        assert_eq!(request["headers"]["x-auth-subject"], SUBJECT, "{request:#}");
        let url = request["url"].as_str().unwrap();
        assert!(
            !url.contains(&token) && !url.to_ascii_lowercase().contains("access_token"),
            "token in a URL the hub received: {url}"
        );
    }

    let invocations = seen["invocations"].as_array().unwrap();
    assert_eq!(invocations.len(), 1, "{seen:#}");
    assert_eq!(invocations[0]["target"], "Send");
    assert_eq!(invocations[0]["arguments"], json!(["hello"]));
    assert_eq!(invocations[0]["user"], SUBJECT);
    assert_eq!(invocations[0]["connectionId"], result["connectionId"]);

    assert!(
        proxy
            .metric("gatehouse_websocket_upgrades_total{result=\"ok\",route=\"/hub\"}")
            .await
            >= 1.0,
        "the upgrade did not go through gatehouse's relay"
    );
    proxy.shutdown().await;
    Session {
        token,
        result,
        seen,
    }
}

fn assert_no_authorization_and_no_token(s: &Session) {
    for request in s.seen["requests"].as_array().unwrap() {
        assert!(
            request["headers"].get("authorization").is_none(),
            "upstream_auth = \"none\" but the hub got Authorization: {request:#}"
        );
        assert!(
            !request.to_string().contains(&s.token),
            "the token reached the hub: {request:#}"
        );
    }
}

/// The browser code path: the token rides in `?access_token=` on the WebSocket, gatehouse
/// takes it from there, strips it, and the hub sees only `X-Auth-Subject`.
#[tokio::test]
async fn browser_signalr_client_query_token_is_stripped_and_hub_sees_identity() {
    if !require_node("browser_signalr_client_query_token_is_stripped_and_hub_sees_identity") {
        return;
    }
    let s = session("browser", "none").await;
    let upgrade = &s.result["upgrades"][0];
    assert_eq!(
        upgrade["queryHasAccessToken"], true,
        "the client did not put the token in the query: {upgrade}"
    );
    assert_eq!(
        upgrade["headerNames"],
        json!([]),
        "a browser WebSocket sets no headers"
    );
    assert_no_authorization_and_no_token(&s);
}

/// The library's Node code path sends `Authorization: Bearer` on the upgrade instead; the
/// hub still sees only the identity.
#[tokio::test]
async fn node_signalr_client_header_token_and_hub_sees_identity() {
    if !require_node("node_signalr_client_header_token_and_hub_sees_identity") {
        return;
    }
    let s = session("node", "none").await;
    let upgrade = &s.result["upgrades"][0];
    assert_eq!(upgrade["queryHasAccessToken"], false, "{upgrade}");
    assert_eq!(upgrade["authorizationIsBearerToken"], true, "{upgrade}");
    assert_no_authorization_and_no_token(&s);
}

/// `upstream_auth = "bearer"`, for a hub that still checks tokens itself: the token that came
/// in the WebSocket query string reaches the hub in `Authorization`, never in its URL.
#[tokio::test]
async fn upstream_auth_bearer_moves_the_signalr_query_token_into_the_header() {
    if !require_node("upstream_auth_bearer_moves_the_signalr_query_token_into_the_header") {
        return;
    }
    let s = session("browser", "bearer").await;
    assert_eq!(s.result["upgrades"][0]["queryHasAccessToken"], true);
    let bearer = format!("Bearer {}", s.token);
    for request in s.seen["requests"].as_array().unwrap() {
        assert_eq!(
            request["headers"]["authorization"].as_str(),
            Some(bearer.as_str()),
            "{request:#}"
        );
    }
}
