//! The dashboard and the alert rules in charts/gatehouse/monitoring/ against what gatehouse
//! really exports: gatehouse runs with a real IdP, upstreams, a WebSocket hub, Redis and
//! TLS; traffic makes every kind of series appear (successes, refusals, upstream and IdP
//! failures, a WebSocket session, a Redis outage); then every metric, every label and every
//! `label="value"` that a dashboard query or an alert expression names must be in the scrape.
//! promtool checks the rules themselves (tests/chart/test_monitoring.py).

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;
use support::*;

const RULES: &str = include_str!("../charts/gatehouse/monitoring/rules.yaml");
const DASHBOARD: &str = include_str!("../charts/gatehouse/monitoring/dashboard.json");
/// Labels that Prometheus adds when it scrapes; gatehouse never exports them.
const TARGET_LABELS: [&str; 3] = ["job", "instance", "namespace"];

type Labels = BTreeMap<String, String>;

#[tokio::test]
async fn every_series_the_dashboard_and_the_alerts_use_is_exported() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let scraped = drive_every_kind_of_traffic(&mut redis).await;
    let mut problems = Vec::new();
    for expr in expressions() {
        for s in selectors(&expr) {
            let Some(series) = scraped.get(&s.metric) else {
                problems.push(format!("{}: not exported ({expr})", s.metric));
                continue;
            };
            for label in s
                .labels
                .iter()
                .filter(|l| !TARGET_LABELS.contains(&l.as_str()))
            {
                if !series.iter().any(|l| l.contains_key(label)) {
                    problems.push(format!("{}: no label {label}", s.metric));
                }
            }
            for (label, value) in &s.equals {
                if !series.iter().any(|l| l.get(label) == Some(value)) {
                    problems.push(format!("{}: no series with {label}=\"{value}\"", s.metric));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test]
async fn the_scanner_sees_what_the_expressions_name() {
    // The check above is only as good as this reading of PromQL.
    let found = selectors(
        r#"sum by (job, route) (rate(gatehouse_x_total{kind="connect", code=~"5.."}[5m]))
           / histogram_quantile(0.9, sum by (le) (rate(process_y_bucket[1m])))"#,
    );
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].metric, "gatehouse_x_total");
    assert_eq!(found[0].labels, set(&["job", "route", "kind", "code"]));
    assert_eq!(found[0].equals, vec![("kind".into(), "connect".into())]);
    assert_eq!(found[1].metric, "process_y_bucket");
    assert_eq!(found[1].labels, set(&["le"]));
    assert!(
        expressions().len() >= 30,
        "dashboard and rules were not read"
    );
}

/// Every PromQL expression: the dashboard's targets and the rules' `expr` blocks.
fn expressions() -> Vec<String> {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut out: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    let mut lines = RULES.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() != "expr: |" {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let mut expr = String::new();
        while let Some(next) = lines.peek() {
            if next.len() - next.trim_start().len() <= indent {
                break;
            }
            expr.push_str(lines.next().unwrap());
            expr.push('\n');
        }
        out.push(expr);
    }
    out
}

/// One metric named in an expression, the labels used with it (in its matchers or in a
/// `by (...)` around it), and its `label="value"` matchers.
#[derive(Debug)]
struct Selector {
    metric: String,
    labels: BTreeSet<String>,
    equals: Vec<(String, String)>,
}

fn selectors(expr: &str) -> Vec<Selector> {
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out: Vec<Selector> = Vec::new();
    // (closing paren depth, labels) of each `by (...)` group that is open here.
    let mut groupings: Vec<(usize, Vec<String>)> = Vec::new();
    let (mut i, mut depth) = (0, 0usize);
    while i < b.len() {
        if b[i] == b'"' {
            i += 1 + expr[i + 1..].find('"').unwrap() + 1;
            continue;
        }
        if b[i] == b'(' {
            depth += 1;
        } else if b[i] == b')' {
            depth -= 1;
            groupings.retain(|(d, _)| *d <= depth);
        }
        if expr[i..].starts_with("by (") && (i == 0 || !ident(b[i - 1])) {
            let end = i + expr[i..].find(')').unwrap();
            let labels = expr[i + 4..end].split(',').map(|l| l.trim().to_string());
            // The labels apply to what the next parenthesised group holds.
            groupings.push((depth + 1, labels.collect()));
            i = end + 1;
            continue;
        }
        let starts = (i == 0 || !ident(b[i - 1]))
            && (expr[i..].starts_with("gatehouse_") || expr[i..].starts_with("process_"));
        if !starts {
            i += 1;
            continue;
        }
        let end = i + expr[i..]
            .find(|c: char| !ident(c as u8))
            .unwrap_or(expr.len() - i);
        let mut s = Selector {
            metric: expr[i..end].to_string(),
            labels: groupings.iter().flat_map(|(_, l)| l.clone()).collect(),
            equals: Vec::new(),
        };
        i = end;
        if b.get(i) == Some(&b'{') {
            let close = i + expr[i..].find('}').unwrap();
            for matcher in expr[i + 1..close].split(',') {
                let name_end = matcher.find(['=', '!']).unwrap();
                let name = matcher[..name_end].trim().to_string();
                let op = &matcher[name_end..name_end + 2];
                let value = matcher[name_end..]
                    .trim_start_matches(['=', '!', '~'])
                    .trim();
                if !op.starts_with("=~") && !op.starts_with("!") {
                    s.equals
                        .push((name.clone(), value.trim_matches('"').to_string()));
                }
                s.labels.insert(name);
            }
            i = close + 1;
        }
        out.push(s);
    }
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The Prometheus text format as metric name -> label sets.
fn parse_scrape(text: &str, into: &mut BTreeMap<String, Vec<Labels>>) {
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let series = &line[..line.rfind(' ').unwrap()];
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels: Labels = labels
            .split("\",")
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        into.entry(name.to_string()).or_default().push(labels);
    }
}

const SECRET: &str = "introspection-secret";

/// Runs gatehouse (and a second, TLS one) through every kind of event the dashboard and the
/// alerts watch; returns the union of both scrapes.
async fn drive_every_kind_of_traffic(redis: &mut RedisServer) -> BTreeMap<String, Vec<Labels>> {
    let key = Key::rsa("rsa1", "k1");
    let idp = Idp::start(std::slice::from_ref(&key)).await;
    let (api, hub) = (Upstream::echo().await, WsHub::start().await);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let toml = format!(
        r#"
[[issuer]]
name = "idp"
issuer = "{iss}"
audiences = ["api"]
discovery = true

[[issuer]]
name = "down"
issuer = "https://down.example/"
audiences = ["api"]
jwks_url = "http://{dead}/jwks"
refresh = "1s"

[[introspection]]
name = "opaque"
url = "http://{dead}/introspect"
client_id = "gatehouse"
client_secret_env = "S"
allow_http = true

[tickets]
store = "{redis}"

[revocation]
store = "{redis}"
on_store_error = "allow"
resync = "500ms"

[[route]]
path = "/api"
upstream = "{api}"
max_body_bytes = 10

[[route]]
path = "/dead"
upstream = "http://{dead}"

[[route]]
path = "/hub"
upstream = "{hub}"
websocket = true
tokens = ["ticket", "header"]
"#,
        iss = idp.issuer(),
        redis = redis.url(),
        api = api.url(),
        hub = hub.url(),
    );
    let proxy = TestProxy::start_with_secrets(&toml, &[("S", SECRET)]).await;
    let token = mint(&key, &claims(&idp.issuer(), "api", json!({"sub": "alice"})));
    let keys_loaded = eventually(Duration::from_secs(10), || async {
        bearer(&proxy.url("/api/x"), &token).await.status == 200
    })
    .await;
    assert!(keys_loaded, "the IdP's keys never loaded");
    assert_eq!(bearer(&proxy.url("/api/x"), &token).await.status, 200); // cache hit
    assert_eq!(get(&proxy.url("/api/x"), &[]).await.status, 401);
    assert_eq!(bearer(&proxy.url("/dead/x"), &token).await.status, 502);
    let upload = http::Request::post(proxy.url("/api/upload"))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(vec![
            b'x';
            100
        ])))
        .unwrap();
    assert_eq!(send(upload).await.status, 413);
    assert_eq!(
        bearer(&proxy.url("/api/x"), "opaque-token").await.status,
        503
    );
    websocket_session(&proxy, &token).await;

    redis.stop();
    assert_eq!(ticket(&proxy, &token).await.status, 503);
    let counted = eventually(Duration::from_secs(10), || async {
        bearer(&proxy.url("/api/x"), &token).await;
        proxy
            .metric("gatehouse_store_errors_total{store=\"revocation\"}")
            .await
            >= 1.0
    })
    .await;
    assert!(counted, "the revocation store's outage was never counted");
    let key_errors = eventually(Duration::from_secs(10), || async {
        proxy
            .metric("gatehouse_jwks_refresh_total{issuer=\"down\",result=\"error\"}")
            .await
            >= 1.0
    })
    .await;
    assert!(key_errors, "the unreachable JWKS was never counted");

    let mut scraped = BTreeMap::new();
    parse_scrape(
        &get(&proxy.admin_url("/metrics"), &[]).await.body,
        &mut scraped,
    );
    parse_scrape(&tls_instance_scrape(&api).await, &mut scraped);
    scraped
}

async fn ticket(proxy: &TestProxy, token: &str) -> Answer {
    let request = http::Request::post(proxy.url("/.gatehouse/ticket"))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::default())
        .unwrap();
    send(request).await
}

/// A ticket, a WebSocket session on it, and a clean close by the client.
async fn websocket_session(proxy: &TestProxy, token: &str) {
    let issued = ticket(proxy, token).await;
    assert_eq!(issued.status, 201);
    let t = issued.json()["ticket"].as_str().unwrap().to_string();
    let (mut ws, _) = ws_connect(&format!("ws://{}/hub?ticket={t}", proxy.addr), &[])
        .await
        .unwrap();
    ws.close(None).await.unwrap();
    let closed = eventually(Duration::from_secs(5), || async {
        proxy
            .metric("gatehouse_websocket_closes_total{reason=\"client_closed\",route=\"/hub\"}")
            .await
            >= 1.0
    })
    .await;
    assert!(closed, "the WebSocket close was never counted");
}

/// A TLS instance with a certificate valid until 2030-06-01: its expiry gauge must say so.
async fn tls_instance_scrape(api: &Upstream) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2030, 6, 1);
    let pair = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&pair).unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), pair.serialize_pem()).unwrap();
    let toml = format!(
        "[listen.tls]\ncert = \"{d}/tls.crt\"\nkey = \"{d}/tls.key\"\n\n[[route]]\npath = \"/\"\nupstream = \"{up}\"\nauth = \"none\"\n",
        d = dir.path().display(),
        up = api.url()
    );
    let proxy = TestProxy::start(&toml).await;
    let series = "gatehouse_certificate_expiry_timestamp_seconds{certificate=\"listen\"}";
    let set = eventually(Duration::from_secs(5), || async {
        proxy.metric(series).await == 1_906_502_400.0
    })
    .await;
    assert!(set, "certificate expiry not 2030-06-01T00:00:00Z");
    get(&proxy.admin_url("/metrics"), &[]).await.body
}
