//! CORS: a single-page app on another origin reaches a hub through gatehouse.
//!
//! The browser tests load `tests/browser/cors.html` in Debian's Chromium from a page server
//! on its own loopback port (another port is another origin) with the browser build of the
//! real `@microsoft/signalr` client, and talk to gatehouse on a second port in front of
//! `tests/signalr/hub.js`: a readable 401, negotiate + WebSocket with `accessTokenFactory`,
//! and the ticket flow. With `cors = "pass"` (the default) the preflight reaches the hub
//! without any credential and the hub answers it as ASP.NET Core's `UseCors` would; with
//! gatehouse answering, the hub never sees one. The other tests speak raw HTTP.
//!
//! The browser tests need `/usr/bin/chromium`, `node`, playwright-core (`tests/browser`)
//! and the npm packages of `tests/signalr`, all installed by `.ci/setup`.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use support::browser::{browser_dir, describe, prerequisites, run_bounded, CHROMIUM};
use support::*;

const SUBJECT: &str = "spa-user";

fn token() -> String {
    let mut c = claims(ISS, "api", json!({}));
    c["sub"] = json!(SUBJECT);
    mint_with(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        &c,
    )
}

/// The page's origin: `/` is cors.html, `/signalr.js` the client's browser build.
async fn page_server() -> Upstream {
    let page = Bytes::from(std::fs::read(browser_dir().join("cors.html")).unwrap());
    let client = signalr_dir().join("node_modules/@microsoft/signalr/dist/browser/signalr.js");
    let script = Bytes::from(std::fs::read(client).unwrap());
    Upstream::start(move |req| {
        let (body, kind) = match req.uri().path() {
            "/signalr.js" => (script.clone(), "text/javascript"),
            _ => (page.clone(), "text/html; charset=utf-8"),
        };
        async move {
            let mut r = http::Response::new(full(body));
            r.headers_mut()
                .insert("content-type", http::HeaderValue::from_static(kind));
            r
        }
    })
    .await
}

/// Gatehouse in front of the hub: `/hub` takes the JWT (header, then `?access_token=`),
/// `/t` (prefix stripped, so the hub still sees `/hub`) takes tickets in `?access_token=`.
fn config(hub: &str, page_origin: &str, cors: &str) -> String {
    format!(
        r#"
[[issuer]]
name = "sts"
issuer = "{ISS}"
audiences = ["api"]
hmac_secret_env = "HS"

[identity]
headers = {{ "X-Auth-Subject" = "sub" }}

[tickets]
param = "access_token"

[[route]]
path = "/hub"
upstream = "{hub}"
websocket = true
tokens = ["header", "query:access_token"]
allowed_origins = ["{page_origin}"]
{cors}

[[route]]
path = "/t"
upstream = "{hub}"
strip_prefix = true
websocket = true
tokens = ["ticket"]
allowed_origins = ["{page_origin}"]
"#
    )
}

/// Loads the page in Chromium and returns its verdict (`window.corsResult`).
async fn run_page(page: &Upstream, proxy: &TestProxy, token: &str) -> Value {
    let url = format!("{}/#proxy={}&token={token}", page.url(), proxy.url(""));
    let (output, timed_out) = tokio::task::spawn_blocking(move || {
        run_bounded(
            Command::new("node")
                .arg(browser_dir().join("cors.js"))
                .arg(&url)
                .env("CHROMIUM", CHROMIUM),
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    assert!(
        !timed_out && output.status.success(),
        "cors.js failed (timed out: {timed_out}): {}",
        describe(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap();
    serde_json::from_str(line).unwrap()
}

/// What holds in both modes: every flow worked, the 401 was readable, the hub signed the
/// messages with the token's subject, and no token or `access_token` reached the hub.
fn assert_flows_worked(result: &Value, requests: &[Value], token: &str) {
    let flows = &result["flows"];
    for flow in ["unauthorized", "negotiate", "ticket"] {
        assert_eq!(flows[flow]["ok"], true, "{flow}: {result:#}");
    }
    assert_eq!(flows["unauthorized"]["status"], 401, "{result:#}");
    assert_eq!(
        flows["unauthorized"]["error"], "malformed_token",
        "{result:#}"
    );
    assert_eq!(
        flows["unauthorized"]["wwwAuthenticate"],
        r#"Bearer realm="gatehouse", error="invalid_token""#,
        "{result:#}"
    );
    for flow in ["negotiate", "ticket"] {
        assert_eq!(flows[flow]["user"], SUBJECT, "{result:#}");
        assert_eq!(flows[flow]["text"], flows[flow]["sent"], "{result:#}");
    }
    assert_eq!(flows["ticket"]["ticketsIssued"], 1, "{result:#}");
    for request in requests {
        let url = request["url"].as_str().unwrap();
        assert!(
            !request.to_string().contains(token) && !url.contains("access_token"),
            "a token reached the hub: {request:#}"
        );
        if request["method"] != "OPTIONS" {
            assert_eq!(request["headers"]["x-auth-subject"], SUBJECT, "{request:#}");
        }
    }
    let upgrades: Vec<&Value> = requests.iter().filter(|r| r["kind"] == "upgrade").collect();
    assert_eq!(upgrades.len(), 2, "{requests:#?}");
    assert!(upgrades[0]["url"].as_str().unwrap().starts_with("/hub?id="));
    assert_eq!(
        upgrades[1]["url"], "/hub",
        "the ticket flow skips negotiation"
    );
}

fn browser_ready() -> bool {
    let signalr = signalr_dir().join("node_modules/@microsoft/signalr/dist/browser/signalr.js");
    prerequisites() && require_component(signalr.exists(), "npm ci in tests/signalr")
}

#[tokio::test]
async fn chromium_cross_origin_signalr_with_cors_pass_the_hub_answers_its_own_preflight() {
    if !browser_ready() {
        return;
    }
    let page = page_server().await;
    let hub = NodeHub::start(&[], &[("HUB_CORS_ORIGINS", &page.url())]);
    // No `cors` key: "pass" is the default.
    let proxy =
        TestProxy::start_with_secrets(&config(&hub.url(), &page.url(), ""), &[("HS", SECRET)])
            .await;
    let token = token();
    let result = run_page(&page, &proxy, &token).await;
    let requests = hub.seen().await["requests"].as_array().unwrap().clone();
    assert_flows_worked(&result, &requests, &token);

    let preflights: Vec<&Value> = requests
        .iter()
        .filter(|r| r["method"] == "OPTIONS")
        .collect();
    assert!(!preflights.is_empty(), "no preflight reached the hub");
    for preflight in preflights {
        let headers = preflight["headers"].as_object().unwrap();
        assert_eq!(preflight["url"], "/hub/negotiate?negotiateVersion=1");
        assert_eq!(headers["origin"], page.url().as_str());
        assert_eq!(headers["access-control-request-method"], "POST");
        for credential in ["authorization", "cookie", "x-auth-subject"] {
            assert!(!headers.contains_key(credential), "{preflight:#}");
        }
    }
    let passed = r#"gatehouse_cors_preflights_total{result="passed",route="/hub"}"#;
    assert!(proxy.metric(passed).await >= 1.0);
}

#[tokio::test]
async fn chromium_cross_origin_signalr_with_cors_answer_gatehouse_answers_the_preflight() {
    if !browser_ready() {
        return;
    }
    let page = page_server().await;
    // This hub knows nothing of CORS: every CORS header the browser needs is gatehouse's.
    let hub = NodeHub::start(&[], &[]);
    let cors = "[route.cors]\nallow_credentials = true";
    let proxy =
        TestProxy::start_with_secrets(&config(&hub.url(), &page.url(), cors), &[("HS", SECRET)])
            .await;
    let token = token();
    let result = run_page(&page, &proxy, &token).await;
    let requests = hub.seen().await["requests"].as_array().unwrap().clone();
    assert_flows_worked(&result, &requests, &token);
    assert!(
        requests.iter().all(|r| r["method"] != "OPTIONS"),
        "a preflight reached the hub: {requests:#?}"
    );
    let answered = r#"gatehouse_cors_preflights_total{result="answered",route="/hub"}"#;
    assert!(proxy.metric(answered).await >= 1.0);
}

// === Raw HTTP: what exactly goes upstream and what comes back ===

const APP: &str = "https://app.example";

fn raw_config(upstream: &str, extra: &str) -> String {
    format!(
        r#"
[[issuer]]
name = "sts"
issuer = "{ISS}"
audiences = ["api"]
hmac_secret_env = "HS"

[identity]
headers = {{ "X-Auth-Subject" = "sub" }}

[tickets]

[[route]]
path = "/api"
upstream = "{upstream}"
websocket = true
tokens = ["header", "query:access_token", "cookie:at", "subprotocol", "ticket"]
allowed_origins = ["{APP}"]
{extra}
"#
    )
}

async fn options(proxy: &TestProxy, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut request = http::Request::builder()
        .method("OPTIONS")
        .uri(proxy.url(path));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    send(
        request
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
    .await
}

/// A preflight carrying every credential the route knows (a browser sends none; anyone
/// else may) reaches the upstream anonymous and with none of them.
#[tokio::test]
async fn a_passed_preflight_reaches_the_upstream_without_any_credential() {
    let upstream = Upstream::echo().await;
    let proxy =
        TestProxy::start_with_secrets(&raw_config(&upstream.url(), ""), &[("HS", SECRET)]).await;
    let token = token();
    let answer = options(
        &proxy,
        &format!("/api/negotiate?access_token={token}&ticket=t1&x=1"),
        &[
            ("origin", APP),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization"),
            ("authorization", &format!("Bearer {token}")),
            ("proxy-authorization", &format!("Bearer {token}")),
            ("cookie", &format!("at={token}; session=s1")),
            ("sec-websocket-protocol", &format!("bearer.{token}, chat")),
            ("x-auth-subject", "admin"),
            ("x_auth_subject", "admin"),
        ],
        "",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let seen = upstream.last();
    assert_eq!(seen.method, "OPTIONS");
    assert_eq!(seen.uri, "/api/negotiate?x=1");
    for gone in [
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-auth-subject",
        "x_auth_subject",
    ] {
        assert!(
            seen.headers.get(gone).is_none(),
            "{gone} reached the upstream"
        );
    }
    assert_eq!(seen.headers["sec-websocket-protocol"], "chat");
    assert_eq!(seen.headers["origin"], APP);
    assert_eq!(seen.headers["access-control-request-method"], "POST");
    // The ticket in the query was not redeemed (nor the token validated): nothing counted.
    let redeemed = r#"gatehouse_tickets_total{result="invalid_ticket"}"#;
    assert_eq!(proxy.metric(redeemed).await, 0.0);
}

#[tokio::test]
async fn an_options_that_is_not_a_preflight_is_authenticated() {
    let upstream = Upstream::echo().await;
    let proxy =
        TestProxy::start_with_secrets(&raw_config(&upstream.url(), ""), &[("HS", SECRET)]).await;
    let no_request_method = options(&proxy, "/api/x", &[("origin", APP)], "").await;
    assert_eq!(no_request_method.status, 401);
    let no_origin = options(
        &proxy,
        "/api/x",
        &[("access-control-request-method", "GET")],
        "",
    )
    .await;
    assert_eq!(no_origin.status, 401);
    let preflight = [("origin", APP), ("access-control-request-method", "GET")];
    let with_body = options(&proxy, "/api/x", &preflight, "{}").await;
    assert_eq!(with_body.status, 401);
    assert!(
        upstream.requests().is_empty(),
        "an OPTIONS went upstream unauthenticated"
    );
    let token = token();
    let authorization = format!("Bearer {token}");
    let with_token = options(&proxy, "/api/x", &[("authorization", &authorization)], "").await;
    assert_eq!(with_token.status, 200);
    assert_eq!(upstream.last().headers["x-auth-subject"], SUBJECT);
}

#[tokio::test]
async fn a_preflight_from_an_unlisted_origin_is_refused_in_both_modes() {
    for extra in ["", "cors = \"answer\""] {
        let upstream = Upstream::echo().await;
        let proxy =
            TestProxy::start_with_secrets(&raw_config(&upstream.url(), extra), &[("HS", SECRET)])
                .await;
        for origin in ["https://app.example.evil", "https://evil.example", "null"] {
            let preflight = [
                ("origin", origin),
                ("access-control-request-method", "POST"),
            ];
            let answer = options(&proxy, "/api/x", &preflight, "").await;
            assert_eq!(answer.status, 403, "{extra}: {origin}");
            assert_eq!(answer.header("access-control-allow-origin"), None);
        }
        assert!(upstream.requests().is_empty(), "{extra}");
        let refused = r#"gatehouse_cors_preflights_total{result="refused",route="/api"}"#;
        assert_eq!(proxy.metric(refused).await, 3.0, "{extra}");
    }
}

/// In answer mode gatehouse owns the route's CORS headers: the upstream cannot widen them.
#[tokio::test]
async fn answer_mode_answers_preflights_and_replaces_the_upstreams_cors_headers() {
    let upstream = Upstream::start(|_| async {
        let mut r = http::Response::new(full("hi"));
        let h = r.headers_mut();
        h.insert(
            "access-control-allow-origin",
            http::HeaderValue::from_static("*"),
        );
        h.insert(
            "access-control-allow-methods",
            http::HeaderValue::from_static("PUT"),
        );
        r
    })
    .await;
    let cors = "[route.cors]\nallowed_methods = [\"GET\", \"PUT\"]\n\
         allowed_headers = [\"authorization\", \"x-custom\"]\nexpose_headers = [\"x-total\"]\n\
         allow_credentials = true\nmax_age = \"1h\"";
    let proxy =
        TestProxy::start_with_secrets(&raw_config(&upstream.url(), cors), &[("HS", SECRET)]).await;
    let preflight = [("origin", APP), ("access-control-request-method", "PUT")];
    let answer = options(&proxy, "/api/x", &preflight, "").await;
    assert_eq!(answer.status, 204);
    assert_eq!(answer.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        answer.header("access-control-allow-methods"),
        Some("GET, PUT")
    );
    assert_eq!(
        answer.header("access-control-allow-headers"),
        Some("authorization, x-custom")
    );
    assert_eq!(
        answer.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(answer.header("access-control-max-age"), Some("3600"));
    assert!(upstream.requests().is_empty());

    let token = token();
    let authorization = format!("Bearer {token}");
    let actual = get(
        &proxy.url("/api/x"),
        &[("origin", APP), ("authorization", &authorization)],
    )
    .await;
    assert_eq!(actual.status, 200);
    assert_eq!(actual.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        actual.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        actual.header("access-control-expose-headers"),
        Some("x-total")
    );
    assert_eq!(actual.header("access-control-allow-methods"), None);
    assert_eq!(actual.header("vary"), Some("Origin"));

    let other = get(
        &proxy.url("/api/x"),
        &[
            ("origin", "https://evil.example"),
            ("authorization", &authorization),
        ],
    )
    .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("access-control-allow-origin"), None);

    // gatehouse's own 401 is readable by the listed origin, WWW-Authenticate included.
    let refused = get(&proxy.url("/api/x"), &[("origin", APP)]).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("access-control-allow-origin"), Some(APP));
    let exposed = refused.header("access-control-expose-headers").unwrap();
    assert!(exposed.contains("www-authenticate"), "{exposed}");
}

#[test]
fn check_refuses_credentials_for_any_origin_and_answer_without_origins() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "allowed_origins = [\"*\"]\n[route.cors]\nallow_credentials = true",
            "route[0].cors.allow_credentials:",
        ),
        ("cors = \"answer\"", "route[0].allowed_origins:"),
        ("cors = \"bypass\"", "route[0].cors:"),
        (
            "[route.cors]\nmode = \"pass\"\nmax_age = \"1m\"",
            "route[0].cors.mode:",
        ),
        (
            "[route.cors]\nallowed_origin = [\"x\"]",
            "route.0.cors.allowed_origin",
        ),
        (
            "allowed_origins = [\"https://a.example/\"]",
            "route[0].allowed_origins[0]:",
        ),
    ];
    for (extra, expected) in cases {
        let path = dir.path().join("gatehouse.toml");
        let toml = format!(
            "[[route]]\npath = \"/api\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\n{extra}\n"
        );
        std::fs::write(&path, &toml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{extra}\n{stderr}");
        assert!(
            stderr.contains(expected),
            "{extra}: wanted {expected} in\n{stderr}"
        );
    }
}

/// The ticket endpoint shares the implementation: its preflight is answered for the routes'
/// origins, and its 401 is readable by a listed origin (not by another).
#[tokio::test]
async fn the_ticket_endpoint_answers_with_the_same_cors_rules() {
    let upstream = Upstream::echo().await;
    let proxy =
        TestProxy::start_with_secrets(&raw_config(&upstream.url(), ""), &[("HS", SECRET)]).await;
    let preflight = [("origin", APP), ("access-control-request-method", "POST")];
    let answer = options(&proxy, "/.gatehouse/ticket", &preflight, "").await;
    assert_eq!(answer.status, 204);
    assert_eq!(answer.header("access-control-allow-origin"), Some(APP));
    assert_eq!(answer.header("access-control-allow-methods"), Some("POST"));
    assert_eq!(answer.header("access-control-allow-credentials"), None);

    let post = |origin: &'static str| {
        let request = http::Request::post(proxy.url("/.gatehouse/ticket"))
            .header("origin", origin)
            .body(Full::default())
            .unwrap();
        send(request)
    };
    let refused = post(APP).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("access-control-allow-origin"), Some(APP));
    let other = post("https://evil.example").await;
    assert_eq!(other.status, 403);
    assert_eq!(other.header("access-control-allow-origin"), None);
}

/// A browser attaches cookies to a request from any site: when the ticket endpoint reads a
/// token from a cookie, another route's `"*"` (any page may call that public route) does
/// not open the endpoint to every page; only origins a route names do. With header tokens
/// alone, `"*"` still reaches it.
#[tokio::test]
async fn a_routes_star_does_not_open_a_cookie_reading_ticket_endpoint() {
    let upstream = Upstream::echo().await;
    let public = format!(
        "[[route]]\npath = \"/pub\"\nupstream = \"{}\"\nauth = \"none\"\nallowed_origins = [\"*\"]\n",
        upstream.url()
    );
    let post = |proxy: &TestProxy, origin: &'static str| {
        let request = http::Request::post(proxy.url("/.gatehouse/ticket"))
            .header("origin", origin)
            .body(Full::default())
            .unwrap();
        send(request)
    };
    let with_cookies = raw_config(&upstream.url(), &public).replace(
        "[tickets]\n",
        "[tickets]\ntokens = [\"header\", \"cookie:at\"]\n",
    );
    let proxy = TestProxy::start_with_secrets(&with_cookies, &[("HS", SECRET)]).await;
    assert_eq!(post(&proxy, "https://evil.example").await.status, 403);
    assert_eq!(post(&proxy, "null").await.status, 403);
    assert_eq!(
        post(&proxy, APP).await.status,
        401,
        "a listed origin gets on to the token"
    );

    // No route names an origin: only the endpoint's own site may use the cookie.
    // (The route then reads no cookie itself: a WebSocket route that does must name origins.)
    let unnamed = with_cookies
        .replace(&format!("allowed_origins = [\"{APP}\"]\n"), "")
        .replace("\"cookie:at\", ", "");
    let proxy = TestProxy::start_with_secrets(&unnamed, &[("HS", SECRET)]).await;
    assert_eq!(post(&proxy, "https://evil.example").await.status, 403);
    assert_eq!(post(&proxy, "null").await.status, 403);
    let own: &'static str = format!("http://{}", proxy.addr).leak();
    // The same host over the other scheme is another site (a plain-http page of an https
    // site, rewritten by anyone on its path).
    let other_scheme: &'static str = format!("https://{}", proxy.addr).leak();
    assert_eq!(post(&proxy, other_scheme).await.status, 403);
    assert_eq!(
        post(&proxy, own).await.status,
        401,
        "the endpoint's own site"
    );

    let headers_only = raw_config(&upstream.url(), &public);
    let proxy = TestProxy::start_with_secrets(&headers_only, &[("HS", SECRET)]).await;
    let any = post(&proxy, "https://evil.example").await;
    assert_eq!(any.status, 401, "{}", any.body);
}

/// A cookie rides along with any site's request, so a token read from one speaks for the
/// caller only from the site itself or an origin the route names: another page's request
/// (CSRF) is refused before its token is even validated, while a header token, a request
/// without `Origin` (a navigation) and the listed origin pass.
#[tokio::test]
async fn a_cookie_token_from_another_site_is_refused() {
    let upstream = Upstream::echo().await;
    let proxy =
        TestProxy::start_with_secrets(&raw_config(&upstream.url(), ""), &[("HS", SECRET)]).await;
    let token = token();
    let cookie = format!("at={token}");
    let own = format!("http://{}", proxy.addr);
    // The listener is plain http: its own host over https is another origin.
    let other_scheme = format!("https://{}", proxy.addr);
    let url = proxy.url("/api/x");
    let with = |origin: Option<&str>, auth: (&'static str, String)| {
        let mut request = http::Request::post(&url).header(auth.0, auth.1);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        send(request.body(Full::default()).unwrap())
    };
    for origin in ["https://evil.example", "null", other_scheme.as_str()] {
        let refused = with(Some(origin), ("cookie", cookie.clone())).await;
        assert_eq!(refused.status, 403, "{origin}");
        assert_eq!(refused.json()["error"], "origin_not_allowed");
    }
    let before = upstream.requests().len();
    for origin in [Some(APP), Some(own.as_str()), None] {
        let passed = with(origin, ("cookie", cookie.clone())).await;
        assert_eq!(passed.status, 200, "{origin:?}: {}", passed.body);
    }
    let bearer = format!("Bearer {token}");
    let header = with(Some("https://evil.example"), ("authorization", bearer)).await;
    assert_eq!(header.status, 200, "a header token is the page's own doing");
    assert_eq!(upstream.requests().len(), before + 4);
    // The token is cached now; a cookie holding it with one byte more is still checked
    // as found, before the origin is: malformed, from any origin.
    for origin in [Some("https://evil.example"), None] {
        let malformed = with(origin, ("cookie", format!("{cookie}!"))).await;
        assert_eq!(malformed.status, 401, "{origin:?}");
        assert_eq!(malformed.json()["error"], "malformed_token", "{origin:?}");
    }
}
