//! The request target is judged and forwarded in one canonical spelling: every way of
//! writing a path that a backend reads as another route is refused with 400 or routed
//! (and forwarded) as the backend will read it. Raw HTTP/1.1 sockets, so the bytes reach
//! gatehouse as written, and h2c, whose `:path` must go through the same function.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;

use http::Request;
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct World {
    upstream: Upstream,
    proxy: TestProxy,
    /// A caller who may use `/api` but not `/api/admin` (role `user`).
    user: String,
}

async fn world() -> World {
    let upstream = Upstream::echo().await;
    let key = Key::rsa("rsa1", "k1");
    let toml = format!(
        r#"
{rs256}

[[route]]
path = "/public"
upstream = "{up}"
auth = "none"

[[route]]
path = "/api"
upstream = "{up}"

[[route]]
path = "/api/admin"
upstream = "{up}"
require.roles = ["admin"]

[[route]]
path = "/strip"
upstream = "{up}"
auth = "none"
strip_prefix = true

[[route]]
path = "/Exact"
upstream = "{up}"
auth = "none"
case_sensitive = true
"#,
        rs256 = rs256_issuer(&key),
        up = upstream.url()
    );
    let proxy = TestProxy::start(&toml).await;
    let user = mint(&key, &claims(ISS, "api", json!({ "role": "user" })));
    World {
        upstream,
        proxy,
        user,
    }
}

struct Raw {
    status: u16,
    body: String,
}

/// Sends one HTTP/1.1 request with the target exactly as written.
async fn raw(addr: SocketAddr, method: &str, target: &str, headers: &str) -> Raw {
    let head =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
    exchange(addr, &head).await
}

/// Sends `head` as it is and reads the answer to the end.
async fn exchange(addr: SocketAddr, head: &str) -> Raw {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Raw { status, body }
}

impl World {
    /// As the `user` caller; returns the status and the target the upstream received.
    async fn send(&self, method: &str, target: &str) -> (u16, Option<String>, String) {
        let before = self.upstream.requests().len();
        let auth = format!("Authorization: Bearer {}\r\n", self.user);
        let answer = raw(self.proxy.addr, method, target, &auth).await;
        let seen = self.upstream.requests();
        let forwarded = (seen.len() > before).then(|| seen[seen.len() - 1].uri.clone());
        (answer.status, forwarded, answer.body)
    }
}

#[tokio::test]
async fn every_spelling_of_a_protected_path_is_refused_or_judged_as_the_backend_reads_it() {
    let w = world().await;
    let admin_forbidden = [
        "/public/../api/admin",
        "/api/ADMIN",
        "/api/%61dmin",
        "/api//admin",
        "/api/x/../admin",
        "/api/./admin/",
        "/api/Admin/users",
        "//api/admin",
    ];
    for target in admin_forbidden {
        let (status, forwarded, body) = w.send("GET", target).await;
        assert_eq!(status, 403, "{target} was not judged as /api/admin: {body}");
        assert_eq!(forwarded, None, "{target} reached the upstream");
    }
    let ambiguous = [
        "/public/%2e%2e/api/admin",
        "/public/%2E%2E/api/admin",
        "/public/..%2fapi/admin",
        "/public/..%5capi/admin",
        "/public/..;/api/admin",
        "/api/admin;x=1",
        "/api;x/admin",
        "/api/admin%3bx",
        "/public/%252e%252e/api/admin",
        "/public/..\\api\\admin",
        "/api/adm%C4%B1n",
        "/api/admin.",
        "/api/admin%20",
        "/api/%20admin",
        "/public/%c0%ae%c0%ae/api/admin",
        "/api/x%00",
        "/api/%0d%0aX-Injected:%20y",
    ];
    for target in ambiguous {
        let (status, forwarded, body) = w.send("GET", target).await;
        assert_eq!(status, 400, "{target} was not refused: {body}");
        assert_eq!(forwarded, None, "{target} reached the upstream");
        assert!(
            body.contains("\"ambiguous_path\"") || body.contains("\"bad_path\""),
            "{target}: {body}"
        );
    }
}

#[tokio::test]
async fn the_upstream_receives_the_canonical_path_and_the_query_as_sent() {
    let w = world().await;
    for (target, canonical) in [
        ("/public/a/../b", "/public/b"),
        ("/public//x///y/", "/public/x/y/"),
        ("/public/%7euser/%41", "/public/~user/A"),
        ("/PUBLIC/a%3fb", "/PUBLIC/a%3Fb"),
        ("/api/./x?q=%2e%2e&a=/../", "/api/x?q=%2e%2e&a=/../"),
        ("/public/../api/x", "/api/x"),
    ] {
        let (status, forwarded, body) = w.send("GET", target).await;
        assert_eq!(status, 200, "{target}: {body}");
        assert_eq!(forwarded.as_deref(), Some(canonical), "{target}");
    }
}

#[tokio::test]
async fn absolute_form_targets_must_name_this_listener_and_host() {
    let w = world().await;
    let addr = w.proxy.addr;
    let (status, forwarded, _) = w
        .send("GET", &format!("http://{addr}/public/../api/admin"))
        .await;
    assert_eq!((status, forwarded), (403, None));
    let (status, forwarded, _) = w.send("GET", &format!("http://{addr}/api/x")).await;
    assert_eq!((status, forwarded.as_deref()), (200, Some("/api/x")));
    for target in [
        "http://evil.example/api/x".to_string(),
        format!("https://{addr}/api/x"),
        format!("http://user@{addr}/api/x"),
        format!("{addr}"),
    ] {
        let (status, forwarded, body) = w.send("GET", &target).await;
        assert_eq!((status, forwarded), (400, None), "{target}: {body}");
    }
}

#[tokio::test]
async fn a_request_without_one_well_formed_host_is_refused() {
    let w = world().await;
    let before = w.upstream.requests().len();
    let heads = [
        "GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n".to_string(),
        "GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n".into(),
        "GET /public/x HTTP/1.1\r\nHost: a\r\nHost: a\r\nConnection: close\r\n\r\n".into(),
        "GET /public/x HTTP/1.1\r\nHost: app.example, evil.example\r\nConnection: close\r\n\r\n"
            .into(),
        "GET /public/x HTTP/1.1\r\nHost: user@app.example\r\nConnection: close\r\n\r\n".into(),
        "GET /public/x HTTP/1.1\r\nHost: app.example:99999\r\nConnection: close\r\n\r\n".into(),
    ];
    for head in &heads {
        let answer = exchange(w.proxy.addr, head).await;
        assert_eq!(answer.status, 400, "{head:?}: {}", answer.body);
        assert!(
            answer.body.contains("\"bad_target\""),
            "{head:?}: {}",
            answer.body
        );
    }
    assert_eq!(
        w.upstream.requests().len(),
        before,
        "a refused request reached the upstream"
    );
    // HTTP/1.0 needs no Host; a bracketed IPv6 address with a port is a host.
    for head in [
        "GET /public/x HTTP/1.0\r\n\r\n",
        "GET /public/x HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n",
    ] {
        let answer = exchange(w.proxy.addr, head).await;
        assert_eq!(answer.status, 200, "{head:?}: {}", answer.body);
    }
}

#[tokio::test]
async fn connect_is_never_forwarded() {
    let w = world().await;
    for target in ["/api/x".to_string(), format!("{}", w.upstream.addr)] {
        let (status, forwarded, body) = w.send("CONNECT", &target).await;
        assert_eq!((status, forwarded), (400, None), "{target}: {body}");
        assert!(body.contains("connect_refused"), "{body}");
    }
    let (status, forwarded, _) = w.send("OPTIONS", "*").await;
    assert_eq!((status, forwarded), (404, None));
    let (status, forwarded, _) = w.send("GET", "*").await;
    assert_eq!((status, forwarded), (400, None));
}

#[tokio::test]
async fn routes_match_in_any_case_unless_exact_and_strip_by_matched_length() {
    let w = world().await;
    let (status, forwarded, _) = w.send("GET", "/PUBLIC/Page").await;
    assert_eq!((status, forwarded.as_deref()), (200, Some("/PUBLIC/Page")));
    let (status, forwarded, _) = w.send("GET", "/STRIP/a/B").await;
    assert_eq!((status, forwarded.as_deref()), (200, Some("/a/B")));
    let (status, forwarded, _) = w.send("GET", "/sTrIp").await;
    assert_eq!((status, forwarded.as_deref()), (200, Some("/")));
    let (status, forwarded, _) = w.send("GET", "/Exact/x").await;
    assert_eq!((status, forwarded.as_deref()), (200, Some("/Exact/x")));
    let (status, forwarded, _) = w.send("GET", "/exact/x").await;
    assert_eq!((status, forwarded), (404, None));
}

/// One h2c request; the status and the target the upstream received.
async fn h2c(w: &World, path: &str, host: Option<&str>) -> (u16, Option<String>) {
    let extra: Vec<(&str, &str)> = host.map(|h| ("host", h)).into_iter().collect();
    h2c_with(w, path, &extra).await
}

/// One h2c request with `extra` fields; the status and the target the upstream received.
async fn h2c_with(w: &World, path: &str, extra: &[(&str, &str)]) -> (u16, Option<String>) {
    let before = w.upstream.requests().len();
    let tcp = TcpStream::connect(w.proxy.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let mut request = Request::get(format!("http://{}{path}", w.proxy.addr))
        .header("authorization", format!("Bearer {}", w.user));
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let (response, _) = client
        .send_request(request.body(()).unwrap(), true)
        .unwrap();
    let status = response.await.unwrap().status().as_u16();
    let seen = w.upstream.requests();
    let forwarded = (seen.len() > before).then(|| seen[seen.len() - 1].clone());
    if let Some(seen) = &forwarded {
        let forwarded_host = seen.headers.get("x-forwarded-host").unwrap();
        assert_eq!(forwarded_host, &w.proxy.addr.to_string());
    }
    (status, forwarded.map(|s| s.uri))
}

/// RFC 9113 §8.2.1: an HTTP/2 field value must not begin or end with whitespace, and an
/// intermediary must not forward such a request. HTTP/1.1 parsers trim it, so an HTTP/1.1
/// upstream reads another value than the one judged here; an HTTP/2 one may take the
/// whole connection down, every other caller's streams with it.
#[tokio::test]
async fn an_http2_field_value_with_whitespace_at_either_end_is_refused() {
    let w = world().await;
    for value in [" padded", "padded ", "\tpadded", "padded\t"] {
        let sent = h2c_with(&w, "/api/x", &[("x-note", value)]).await;
        assert_eq!(sent, (400, None), "{value:?}");
    }
    let sent = h2c_with(&w, "/api/x", &[("x-note", "in side")]).await;
    assert_eq!(sent, (200, Some("/api/x".to_string())));
}

#[tokio::test]
async fn http2_paths_go_through_the_same_canonicalisation() {
    let w = world().await;
    for path in [
        "/public/../api/admin",
        "/api//admin",
        "/api/%61dmin",
        "/API/admin",
    ] {
        assert_eq!(h2c(&w, path, None).await, (403, None), "{path}");
    }
    for path in [
        "/public/%2e%2e/api/admin",
        "/api/admin;x=1",
        "/public/..%2fapi",
    ] {
        assert_eq!(h2c(&w, path, None).await, (400, None), "{path}");
    }
    let (status, forwarded) = h2c(&w, "/api/x/../y//z", None).await;
    assert_eq!((status, forwarded.as_deref()), (200, Some("/api/y/z")));
    let own = w.proxy.addr.to_string();
    assert_eq!(h2c(&w, "/api/x", Some(&own)).await.0, 200);
    assert_eq!(h2c(&w, "/api/x", Some("evil.example")).await, (400, None));
}

#[tokio::test]
async fn config_refuses_route_paths_no_canonical_request_can_match() {
    let base = "[[route]]\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\n";
    for (path, expected) in [
        ("/a/../b", "write it canonically, as \"/b\""),
        ("/%7Euser", "write it canonically, as \"/~user\""),
        ("/a;b", "no request can match it"),
    ] {
        let err = load(&format!("{base}path = {path:?}\n"), &[]).unwrap_err();
        assert!(
            err.contains("route[0].path") && err.contains(expected),
            "{err}"
        );
    }
    let ticket = format!("[tickets]\nendpoint = \"/t/./x\"\n{base}path = \"/\"\n");
    let err = load(&ticket, &[]).unwrap_err();
    assert!(
        err.contains("tickets.endpoint: write it canonically, as \"/t/x\""),
        "{err}"
    );
    let twins = format!("{base}path = \"/Api\"\n{base}path = \"/api\"\n");
    assert!(load(&twins, &[]).unwrap_err().contains("only in case"));
    let paths = "[paths]\nescaped_slashes = \"maybe\"\npath_params = \"drop\"\nmerge = true\n";
    let err = load(&format!("{paths}{base}path = \"/\"\n"), &[]).unwrap_err();
    assert!(err.contains("paths.merge"), "{err}");
    let err = load(
        &format!(
            "[paths]\nescaped_slashes = \"maybe\"\npath_params = \"drop\"\n{base}path = \"/\"\n"
        ),
        &[],
    )
    .unwrap_err();
    assert!(
        err.contains("paths.escaped_slashes") && err.contains("paths.path_params"),
        "{err}"
    );
}

#[tokio::test]
async fn the_access_log_shows_the_canonical_path_and_the_refusal_reason() {
    let upstream = Upstream::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    let toml = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n\
         [[route]]\npath = \"/public\"\nupstream = \"{}\"\nauth = \"none\"\n",
        upstream.url()
    );
    std::fs::write(&config, toml).unwrap();
    let (proc, addr) = Proc::start(&config);
    let addr: SocketAddr = addr.parse().unwrap();
    assert_eq!(
        raw(addr, "GET", "/PUBLIC/a/..//%62?x=%2e", "").await.status,
        200
    );
    assert_eq!(
        raw(addr, "GET", "/public/%2e%2e/admin", "").await.status,
        400
    );
    let (code, logs) = proc.terminate();
    assert_eq!(code, 0);
    let access: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("gatehouse::access"))
        .collect();
    assert_eq!(access.len(), 2, "{logs}");
    assert!(
        access[0].contains(r#""path":"/PUBLIC/b?x=%2e""#),
        "{}",
        access[0]
    );
    assert!(access[0].contains(r#""route":"/public""#), "{}", access[0]);
    assert!(
        access[1].contains(r#""reason":"ambiguous_path""#),
        "{}",
        access[1]
    );
    assert!(access[1].contains(r#""route":"-""#), "{}", access[1]);
}
