//! Several endpoints per route, with SignalR affinity: two real hub instances (`tests/signalr/
//! hub.js`, which answer 404 for a connection id they did not issue, as ASP.NET Core does)
//! behind one route, the real `@microsoft/signalr` client over WebSockets, long polling and
//! server-sent events, through one gatehouse and through two replicas behind HAProxy's
//! connection-level round robin. Every connect must succeed (so each reached the hub that
//! issued its id) and the connections must spread over both hubs. Also: a dead endpoint is
//! ejected while requests keep succeeding, and the connection token stays out of the logs.
//!
//! Needs `node` with the npm packages of `tests/signalr`, and `haproxy` (`.ci/setup`).

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use support::*;

const SUBJECT: &str = "balanced-user";

fn token() -> String {
    let mut claims = claims(ISS, "api", json!({}));
    claims["sub"] = json!(SUBJECT);
    mint_with(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        &claims,
    )
}

fn config(hubs: &[&NodeHub]) -> String {
    let list: Vec<String> = hubs.iter().map(|h| format!("{:?}", h.url())).collect();
    format!(
        r#"
[[issuer]]
name = "sts"
issuer = "{ISS}"
audiences = ["api"]
hmac_secret_env = "HS"

[identity]
headers = {{ "X-Auth-Subject" = "sub" }}

[[route]]
path = "/hub"
upstream = [{list}]
affinity = "signalr"
websocket = true
tokens = ["header", "query:access_token"]
"#,
        list = list.join(", ")
    )
}

async fn proxy(hubs: &[&NodeHub]) -> TestProxy {
    TestProxy::start_with_secrets(&config(hubs), &[("HS", SECRET)]).await
}

/// [`proxy`] with the route's seal key read from `key_file`.
async fn proxy_keyed(hubs: &[&NodeHub], key_file: &std::path::Path) -> TestProxy {
    let toml = format!(
        "{}affinity_key_file = {:?}\n",
        config(hubs),
        key_file.display().to_string()
    );
    TestProxy::start_with_secrets(&toml, &[("HS", SECRET)]).await
}

/// `node client.js` with `n` connections open at once; its JSON result.
async fn run_client(base: String, mode: &'static str, transport: &'static str, n: u32) -> Value {
    let token = token();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("node")
            .args(["client.js", &base, &token, mode])
            .env("SIGNALR_TRANSPORT", transport)
            .env("SIGNALR_CONNECTIONS", n.to_string())
            .current_dir(signalr_dir())
            .stdin(Stdio::null())
            .output()
            .expect("spawn node client.js");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "client.js {mode} {transport} failed:\n{stdout}\n{stderr}"
        );
        let result: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(result["connections"].as_array().unwrap().len(), n as usize);
        result
    })
    .await
    .unwrap()
}

/// Checks every connection of every run against what the hubs saw: each connection is
/// known to exactly one hub, over the transport asked for, and that hub ran its `Send`
/// for the caller; no hub ever saw a sealed id. Returns connections per hub.
async fn connections_per_hub(runs: &[Value], hubs: &[&NodeHub]) -> Vec<usize> {
    let mut seen = Vec::new();
    for hub in hubs {
        seen.push(hub.seen().await);
    }
    let mut counts = vec![0; hubs.len()];
    let transport = |t: &str| match t {
        "websockets" => "WebSockets",
        "longpolling" => "LongPolling",
        _ => "ServerSentEvents",
    };
    for run in runs {
        for c in run["connections"].as_array().unwrap() {
            assert_eq!(c["user"], SUBJECT, "{c}");
            assert_eq!(c["text"], "hello", "{c}");
            let id = &c["connectionId"];
            let owners: Vec<usize> = (0..hubs.len())
                .filter(|i| {
                    seen[*i]["connections"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["connectionId"] == *id)
                })
                .collect();
            assert_eq!(owners.len(), 1, "connection {id} on hubs {owners:?}");
            let hub = &seen[owners[0]];
            let known = hub["connections"].as_array().unwrap();
            let known = known.iter().find(|k| k["connectionId"] == *id).unwrap();
            assert_eq!(
                known["transport"],
                transport(run["transport"].as_str().unwrap())
            );
            assert_eq!(known["user"], SUBJECT);
            let invoked = hub["invocations"].as_array().unwrap();
            assert!(invoked
                .iter()
                .any(|i| i["connectionId"] == *id && i["target"] == "Send"));
            counts[owners[0]] += 1;
        }
    }
    for hub in &seen {
        for request in hub["requests"].as_array().unwrap() {
            let url = request["url"].as_str().unwrap();
            if let Some((_, id)) = url.split_once("id=") {
                assert!(!id.contains('.'), "a hub saw a sealed id: {url}");
            }
        }
    }
    counts
}

#[tokio::test]
async fn node_clients_on_every_transport_reach_the_hub_that_issued_their_connection() {
    if !require_node("node_clients_on_every_transport_reach_the_hub_that_issued_their_connection") {
        return;
    }
    let (a, b) = (NodeHub::start(&["a"], &[]), NodeHub::start(&["b"], &[]));
    let gatehouse = proxy(&[&a, &b]).await;
    let mut runs = Vec::new();
    for (mode, transport, n) in [
        ("browser", "websockets", 4),
        ("browser", "longpolling", 4),
        ("node", "websockets", 2),
        ("node", "sse", 2),
    ] {
        runs.push(run_client(gatehouse.url(""), mode, transport, n).await);
    }
    let counts = connections_per_hub(&runs, &[&a, &b]).await;
    assert_eq!(counts.iter().sum::<usize>(), 12);
    assert!(
        counts.iter().all(|n| *n > 0),
        "load did not spread: {counts:?}"
    );
    eprintln!("one gatehouse, two hubs: connections per hub {counts:?}");
}

/// A free port on 127.0.0.1 (bound, then released for HAProxy to take).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `haproxy` in `mode tcp`, `balance roundrobin` over the replicas; killed when dropped.
struct RoundRobin {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RoundRobin {
    async fn start(replicas: &[&TestProxy]) -> RoundRobin {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let servers: String = replicas
            .iter()
            .enumerate()
            .map(|(i, r)| format!("  server g{i} {}\n", r.addr))
            .collect();
        let cfg = format!(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend edge\n  bind 127.0.0.1:{port}\n  default_backend replicas\n\
             backend replicas\n  balance roundrobin\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn haproxy");
        let up = eventually(Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "haproxy did not listen on {port}");
        RoundRobin {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn two_replicas_behind_tcp_round_robin_keep_every_connection_on_its_hub() {
    let test = "two_replicas_behind_tcp_round_robin_keep_every_connection_on_its_hub";
    if !require_node(test) || !require_component(which("haproxy"), &format!("{test}: haproxy")) {
        return;
    }
    let (a, b) = (NodeHub::start(&["a"], &[]), NodeHub::start(&["b"], &[]));
    let (one, two) = (proxy(&[&a, &b]).await, proxy(&[&a, &b]).await);
    let lb = RoundRobin::start(&[&one, &two]).await;
    let base = format!("http://127.0.0.1:{}", lb.port);
    let mut runs = Vec::new();
    for (mode, transport, n) in [
        ("browser", "websockets", 4),
        ("browser", "longpolling", 4),
        ("node", "websockets", 2),
    ] {
        runs.push(run_client(base.clone(), mode, transport, n).await);
    }
    let counts = connections_per_hub(&runs, &[&a, &b]).await;
    assert_eq!(counts.iter().sum::<usize>(), 10);
    assert!(
        counts.iter().all(|n| *n > 0),
        "load did not spread: {counts:?}"
    );
    let served = |p: &TestProxy| {
        let url = p.admin_url("/metrics");
        async move { get(&url, &[]).await.body }
    };
    for replica in [served(&one).await, served(&two).await] {
        let line = replica.lines().find(|l| {
            l.starts_with("gatehouse_requests_total{")
                && l.contains("/hub")
                && l.contains("code=\"2")
        });
        assert!(
            line.is_some_and(|l| !l.ends_with(" 0")),
            "a replica served nothing:\n{replica}"
        );
    }
    eprintln!("two replicas, two hubs: connections per hub {counts:?}");
}

fn which(bin: &str) -> bool {
    Command::new(bin)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

async fn post(url: &str, token: &str, body: &'static str) -> Answer {
    let request = Request::post(url)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    send(request).await
}

#[tokio::test]
async fn a_token_sealed_by_one_replica_is_unsealed_by_the_other_and_forgeries_get_404() {
    if !require_node("a_token_sealed_by_one_replica_is_unsealed_by_the_other") {
        return;
    }
    let (a, b) = (NodeHub::start(&["a"], &[]), NodeHub::start(&["b"], &[]));
    let (one, two) = (proxy(&[&a, &b]).await, proxy(&[&a, &b]).await);
    let token = token();
    for (version, field) in [("1", "connectionToken"), ("0", "connectionId")] {
        for _ in 0..4 {
            let url = one.url(&format!("/hub/negotiate?negotiateVersion={version}"));
            let negotiated = post(&url, &token, "").await;
            assert_eq!(negotiated.status, StatusCode::OK, "{}", negotiated.body);
            let sealed = negotiated.json()[field].as_str().unwrap().to_string();
            assert!(sealed.contains('.'), "not sealed: {sealed}");
            // The first long poll answers at once, and only on the hub that issued the id.
            let poll = bearer(&two.url(&format!("/hub?id={sealed}")), &token).await;
            assert_eq!(poll.status, StatusCode::OK, "{}", poll.body);
            let ended = send(
                Request::delete(one.url(&format!("/hub?id={sealed}")))
                    .header("authorization", format!("Bearer {token}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await;
            assert_eq!(ended.status, StatusCode::ACCEPTED);
        }
    }
    let before = (a.seen().await, b.seen().await);
    let negotiated = post(&one.url("/hub/negotiate?negotiateVersion=1"), &token, "").await;
    let sealed = negotiated.json()["connectionToken"]
        .as_str()
        .unwrap()
        .to_string();
    let (seal, hub_token) = sealed.split_once('.').unwrap();
    let mut flipped = seal.as_bytes().to_vec();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = format!("{}.{hub_token}", String::from_utf8(flipped).unwrap());
    for id in [
        hub_token.to_string(),
        flipped,
        format!("{sealed}x"),
        format!("{sealed}&id={sealed}"),
        "%ff%00".to_string(),
        "x".repeat(5000),
    ] {
        let answer = bearer(&two.url(&format!("/hub?id={id}")), &token).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{id}: {}",
            answer.body
        );
        assert_eq!(answer.json()["error"], "no_connection");
    }
    let after = (a.seen().await, b.seen().await);
    let count = |s: &Value| s["requests"].as_array().unwrap().len();
    assert_eq!(
        count(&before.0) + count(&before.1) + 1,
        count(&after.0) + count(&after.1),
        "only the negotiate reached a hub"
    );
}

/// Two replicas whose configs list the same hubs in another order (a reload, or a config
/// generated from an unordered source), the second with one hub more (a scale-out): a
/// connection negotiated on one still reaches its hub through the other, with the seal key
/// derived from the config and with a shared `affinity_key_file`.
#[tokio::test]
async fn reordered_endpoints_on_another_replica_still_reach_the_hub_of_the_connection() {
    if !require_node("reordered_endpoints_on_another_replica_still_reach_the_hub") {
        return;
    }
    let (a, b, c) = (
        NodeHub::start(&["a"], &[]),
        NodeHub::start(&["b"], &[]),
        NodeHub::start(&["c"], &[]),
    );
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("affinity.key");
    std::fs::write(&key_file, "a shared affinity key of 32 bytes").unwrap();
    let pairs = [
        (proxy(&[&a, &b]).await, proxy(&[&b, &c, &a]).await),
        (
            proxy_keyed(&[&a, &b], &key_file).await,
            proxy_keyed(&[&c, &b, &a], &key_file).await,
        ),
    ];
    let token = token();
    for (pair, (one, two)) in pairs.iter().enumerate() {
        for _ in 0..6 {
            let negotiated = post(&one.url("/hub/negotiate?negotiateVersion=1"), &token, "").await;
            assert_eq!(negotiated.status, StatusCode::OK, "{}", negotiated.body);
            let sealed = negotiated.json()["connectionToken"]
                .as_str()
                .unwrap()
                .to_string();
            // The first long poll answers at once, and only on the hub that issued the id.
            let poll = bearer(&two.url(&format!("/hub?id={sealed}")), &token).await;
            assert_eq!(poll.status, StatusCode::OK, "pair {pair}: {}", poll.body);
        }
    }
}

#[tokio::test]
async fn a_dead_endpoint_is_ejected_and_requests_still_succeed() {
    let live = Upstream::echo().await;
    let dead = free_port();
    let toml = format!(
        r#"
[[route]]
path = "/api"
upstream = ["{live}", "http://127.0.0.1:{dead}"]
auth = "none"
"#,
        live = live.url()
    );
    let gatehouse = TestProxy::start(&toml).await;
    let ejections = r#"gatehouse_upstream_ejections_total{route="/api"}"#;
    // Bodiless requests that meet the dead endpoint are retried on the live one.
    let mut sent = 0;
    while gatehouse.metric(ejections).await < 1.0 {
        sent += 1;
        assert!(sent <= 64, "the dead endpoint was never tried");
        assert_eq!(
            get(&gatehouse.url("/api/get"), &[]).await.status,
            StatusCode::OK
        );
    }
    // A request with a body is never retried: these succeed because the dead one is ejected.
    for _ in 0..20 {
        let answer = send(
            Request::post(gatehouse.url("/api/post"))
                .body(Full::new(Bytes::from_static(b"payload")))
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    assert_eq!(gatehouse.metric(ejections).await, 1.0);
    let seen = live.requests();
    assert_eq!(seen.len(), sent + 20);
    // A request that came back from the dead endpoint names the live one it went to.
    let host = live.addr.to_string();
    for request in &seen {
        assert_eq!(
            request.headers.get("host").unwrap(),
            host.as_str(),
            "{}",
            request.uri
        );
    }
}

#[tokio::test]
async fn the_access_log_redacts_the_connection_token_of_an_affinity_route() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    let (x, y) = (free_port(), free_port());
    let toml = format!(
        r#"
[listen]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[log]
format = "json"
[[route]]
path = "/hub"
upstream = ["http://127.0.0.1:{x}", "http://127.0.0.1:{y}"]
affinity = "signalr"
auth = "none"
"#
    );
    std::fs::write(&config, toml).unwrap();
    let (proc, addr) = Proc::start(&config);
    let secret = "connection-token-not-logged";
    let answer = get(&format!("http://{addr}/hub?id={secret}&n=1"), &[]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let (_, logs) = proc.terminate();
    assert!(!logs.contains(secret), "{logs}");
    assert!(logs.contains("id=REDACTED&n=1"), "{logs}");
}

/// Serves the page and the SignalR browser bundle (from the npm package) for Chromium.
async fn page_server() -> Upstream {
    let bundle = signalr_dir().join("node_modules/@microsoft/signalr/dist/browser/signalr.js");
    let bundle = Bytes::from(std::fs::read(bundle).unwrap());
    Upstream::start(move |req| {
        let bundle = bundle.clone();
        async move {
            let (body, kind) = match req.uri().path() {
                "/page/signalr.js" => (bundle, "text/javascript"),
                _ => (
                    Bytes::from_static(b"<!doctype html><script src=\"signalr.js\"></script>"),
                    "text/html",
                ),
            };
            let mut response = hyper::Response::new(full(body));
            response
                .headers_mut()
                .insert("content-type", kind.parse().unwrap());
            response
        }
    })
    .await
}

/// `node browser.js`: the browser bundle in Chromium, `n` connections open at once.
async fn run_chromium(page: String, transport: &'static str, n: u32) -> Value {
    let token = token();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("node")
            .args(["browser.js", &page, &token, transport, &n.to_string()])
            .current_dir(signalr_dir())
            .stdin(Stdio::null())
            .output()
            .expect("spawn node browser.js");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "browser.js {transport}:\n{stdout}\n{stderr}"
        );
        assert!(!stdout.contains(&token) && !stderr.contains(&token));
        let result: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(result["connections"].as_array().unwrap().len(), n as usize);
        result
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn chromium_connections_over_websockets_and_long_polling_stick_to_their_hub() {
    let test = "chromium_connections_over_websockets_and_long_polling_stick_to_their_hub";
    let browser = std::path::Path::new("/usr/bin/chromium").exists()
        && signalr_dir()
            .join("../browser/node_modules/playwright-core/package.json")
            .is_file();
    if !require_node(test)
        || !require_component(browser, &format!("{test}: chromium and playwright-core"))
    {
        return;
    }
    let (a, b) = (NodeHub::start(&["a"], &[]), NodeHub::start(&["b"], &[]));
    let pages = page_server().await;
    let toml = format!(
        "{}\n[[route]]\npath = \"/page\"\nupstream = \"{}\"\nauth = \"none\"\n",
        config(&[&a, &b]),
        pages.url()
    );
    let gatehouse = TestProxy::start_with_secrets(&toml, &[("HS", SECRET)]).await;
    let page = gatehouse.url("/page/index.html");
    let mut runs = Vec::new();
    for transport in ["websockets", "longpolling", "sse"] {
        runs.push(run_chromium(page.clone(), transport, 3).await);
    }
    let counts = connections_per_hub(&runs, &[&a, &b]).await;
    assert_eq!(counts.iter().sum::<usize>(), 9);
    assert!(
        counts.iter().all(|n| *n > 0),
        "load did not spread: {counts:?}"
    );
    eprintln!("chromium, two hubs: connections per hub {counts:?}");
}
