//! What a client cannot make the upstream believe: identity and forwarding headers in any
//! spelling a backend folds together, hop-by-hop tricks that would drop ours, and
//! credentials (token cookies, query parameters in every spelling frameworks merge,
//! `Bearer.` subprotocols) that must not reach any upstream or any log line.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::BufRead;

use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn toml(upstream: &str, ws: &str) -> String {
    format!(
        r#"
{HS_ISSUER}

[identity]
headers = {{ "X-Auth-Subject" = "sub", "X-Auth-Roles" = "role" }}

[[route]]
path = "/api"
upstream = "{upstream}"
tokens = ["header", "cookie:session_token"]

[[route]]
path = "/q"
upstream = "{upstream}"
tokens = ["query:access_token"]

[[route]]
path = "/open"
upstream = "{upstream}"
auth = "none"

[[route]]
path = "/ws"
upstream = "{ws}"
websocket = true
tokens = ["subprotocol"]
"#
    )
}

async fn proxy(upstream: &str, ws: &str) -> TestProxy {
    TestProxy::start_with_secrets(&toml(upstream, ws), &[("HS", SECRET)]).await
}

/// One authenticated route `/api` to `upstream`, with this `[identity]` table's body.
async fn api_proxy(upstream: &Upstream, identity: &str) -> TestProxy {
    let config = format!(
        "{HS_ISSUER}\n[identity]\n{identity}\n\n[[route]]\npath = \"/api\"\nupstream = \"{}\"\n",
        upstream.url()
    );
    TestProxy::start_with_secrets(&config, &[("HS", SECRET)]).await
}

fn token(sub: &str) -> String {
    mint_hs(&claims(ISS, "api", json!({"sub": sub, "role": "user"})))
}

/// Sends raw bytes so header spellings reach the proxy exactly as written.
async fn raw(proxy: &TestProxy, request: &str) -> String {
    let mut socket = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    socket.read_to_string(&mut reply).await.unwrap();
    reply
}

/// A header name as CGI, WSGI and Rack read it: case and `_`/`-` folded.
fn folded(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

fn values_folded(headers: &http::HeaderMap, name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| folded(n.as_str()) == name)
        .map(|(_, v)| v.to_str().unwrap().to_string())
        .collect()
}

const SPOOFED: &[&str] = &[
    "X_Auth_Subject: root",
    "x-auth_subject: root",
    "X_AUTH_ROLES: admin",
    "Forwarded: for=6.6.6.6;host=evil.example;proto=https",
    "X-Real-IP: 6.6.6.6",
    "X_Real_IP: 6.6.6.6",
    "X-Original-URL: /admin",
    "X-Rewrite-URL: /admin",
    "X-Original-URI: /admin",
    "X-Original-Method: DELETE",
    "X-Envoy-Original-Path: /admin",
    "X-Forwarded-Port: 8443",
    "X-Forwarded-Prefix: /admin",
    "X-Forwarded-Server: evil",
    "X_Forwarded_For: 6.6.6.6",
    "X_Forwarded_Host: evil.example",
    "X-HTTP-Method-Override: DELETE",
    "X-HTTP-Method: DELETE",
    "X-Method-Override: DELETE",
    "X-Forwarded-For: 6.6.6.6",
    "Client-IP: 6.6.6.6",
    "CF-Connecting-IP: 6.6.6.6",
    "X-ARR-ClientCert: MIIBforged",
    "X_SSL_Client_Verify: SUCCESS",
    "Remote-User: root",
    "X-Auth-Request-User: root",
    "X_Auth_Request_Groups: admins",
    "X-Amzn-Oidc-Identity: root",
    "X-MS-CLIENT-PRINCIPAL-NAME: root",
    "X-Goog-Authenticated-User-Email: accounts.google.com:root@example.com",
    "Client-Cert: :MIIB:",
    "Client-Cert-Chain: :MIIB:",
    "SSL_CLIENT_S_DN: CN=admin",
    "SSL_CLIENT_VERIFY: SUCCESS",
    "X-SSL-Client-CN: admin",
    "X-SSL-Verified: SUCCESS",
    "X-Client-Certificate: x",
    "X-TLS-Client-Cert: x",
    "Front-End-Https: on",
    "X-Url-Scheme: https",
    // gatehouse's own family, names the config does not set (pass 18): a backend may read
    // them beside the ones it does.
    "X-Auth-Groups: admins",
    "X_Auth_Email: ceo@example.com",
    "SM_USER: admin",
    "X-WEBAUTH-ROLE: Admin",
];

const NEVER_FROM_CLIENT: &[&str] = &[
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-original-method",
    "x-envoy-original-path",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "client-ip",
    "cf-connecting-ip",
    "x-arr-clientcert",
    "x-ssl-client-verify",
    "remote-user",
    "x-auth-request-user",
    "x-auth-request-groups",
    "x-amzn-oidc-identity",
    "x-ms-client-principal-name",
    "x-goog-authenticated-user-email",
    "client-cert",
    "client-cert-chain",
    "ssl-client-s-dn",
    "ssl-client-verify",
    "x-ssl-client-cn",
    "x-ssl-verified",
    "x-client-certificate",
    "x-tls-client-cert",
    "front-end-https",
    "x-url-scheme",
    "x-auth-groups",
    "x-auth-email",
    "sm-user",
    "x-webauth-role",
];

#[tokio::test]
async fn spoofed_identity_and_forwarding_headers_never_reach_the_upstream() {
    let upstream = Upstream::echo().await;
    let proxy = proxy(&upstream.url(), &upstream.url()).await;
    let connection =
        "Connection: close, X-Auth-Subject, x_auth_roles, X-Forwarded-For, Forwarded, \
                      X-Request-Id, Authorization, Cookie, Host, X-Forwarded-Proto";
    let request = format!(
        "GET /api/x HTTP/1.1\r\nHost: edge.example\r\nAuthorization: Bearer {}\r\n\
         {}\r\n{connection}\r\nX-Request-Id: trace-1\r\n\r\n",
        token("alice"),
        SPOOFED.join("\r\n"),
    );
    let reply = raw(&proxy, &request).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    let seen = upstream.last().headers;
    assert_eq!(values_folded(&seen, "x-auth-subject"), ["alice"]);
    assert_eq!(values_folded(&seen, "x-auth-roles"), ["user"]);
    assert_eq!(values_folded(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(values_folded(&seen, "x-forwarded-host"), ["edge.example"]);
    assert_eq!(values_folded(&seen, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        values_folded(&seen, "forwarded"),
        ["for=127.0.0.1;proto=http;host=edge.example"]
    );
    assert_eq!(values_folded(&seen, "x-request-id"), ["trace-1"]);
    for name in NEVER_FROM_CLIENT {
        assert!(
            values_folded(&seen, name).is_empty(),
            "{name} reached the upstream"
        );
    }

    // Anonymous: the spoofed identity is gone and nothing replaces it.
    let request = format!(
        "GET /open/x HTTP/1.1\r\nHost: edge.example\r\n{}\r\n{connection}\r\n\r\n",
        SPOOFED.join("\r\n"),
    );
    let reply = raw(&proxy, &request).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let seen = upstream.last().headers;
    assert!(values_folded(&seen, "x-auth-subject").is_empty());
    assert!(values_folded(&seen, "x-auth-roles").is_empty());
    assert_eq!(values_folded(&seen, "x-forwarded-for"), ["127.0.0.1"]);
}

/// A backend that already trusts oauth2-proxy's user header keeps working when gatehouse
/// sets it: the client's spellings never arrive, gatehouse's verified subject does.
#[tokio::test]
async fn an_asserted_header_set_as_identity_carries_only_the_verified_subject() {
    let upstream = Upstream::echo().await;
    let identity = r#"headers = { "X-Auth-Request-User" = "sub" }"#;
    let proxy = api_proxy(&upstream, identity).await;
    let request = format!(
        "GET /api/x HTTP/1.1\r\nHost: edge.example\r\nAuthorization: Bearer {}\r\n\
         X-Auth-Request-User: root\r\nX_AUTH_REQUEST_USER: root\r\nConnection: close\r\n\r\n",
        token("alice"),
    );
    let reply = raw(&proxy, &request).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let seen = upstream.last().headers;
    assert_eq!(values_folded(&seen, "x-auth-request-user"), ["alice"]);
}

/// Pass 19: a fixed list cannot know every product's proxy-auth header, so an operator
/// names their backend's own; they go in every case and `_` spelling.
#[tokio::test]
async fn the_operators_strip_headers_never_reach_the_upstream() {
    let upstream = Upstream::echo().await;
    let identity = r#"headers = { "X-Auth-Subject" = "sub" }
strip_headers = ["X-Backend-User", "X-Internal-*"]"#;
    let proxy = api_proxy(&upstream, identity).await;
    let request = format!(
        "GET /api/x HTTP/1.1\r\nHost: edge.example\r\nAuthorization: Bearer {}\r\n\
         X-Backend-User: root\r\nx_backend_user: root\r\nX-Internal-Role: admin\r\n\
         X_INTERNAL_TENANT: 1\r\nX-Backend-Users: kept\r\nConnection: close\r\n\r\n",
        token("alice"),
    );
    let reply = raw(&proxy, &request).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let seen = upstream.last().headers;
    for name in ["x-backend-user", "x-internal-role", "x-internal-tenant"] {
        assert!(values_folded(&seen, name).is_empty(), "{name}: {seen:?}");
    }
    assert_eq!(values_folded(&seen, "x-backend-users"), ["kept"]);
    assert_eq!(values_folded(&seen, "x-auth-subject"), ["alice"]);
}

/// A stock WSGI server (Python's wsgiref) answering with the identity it read.
struct Wsgi {
    child: std::process::Child,
    url: String,
}

const WSGI_APP: &str = r#"
import sys
from wsgiref.simple_server import make_server, WSGIRequestHandler
class Quiet(WSGIRequestHandler):
    def log_message(self, *a): pass
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ.get("HTTP_X_AUTH_SUBJECT", "<none>").encode()]
server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
print(server.server_port, flush=True)
server.serve_forever()
"#;

impl Wsgi {
    fn start() -> Option<Wsgi> {
        let mut child = std::process::Command::new("python3")
            .args(["-c", WSGI_APP])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Some(Wsgi {
            child,
            url: format!("http://127.0.0.1:{}", line.trim()),
        })
    }
}

impl Drop for Wsgi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_wsgi_backend_reads_only_the_verified_subject() {
    if !ensure_installed("python3", "python3") {
        return;
    }
    let wsgi = Wsgi::start().expect("python3 did not start");
    let proxy = proxy(&wsgi.url, &wsgi.url).await;
    let request = format!(
        "GET /api/x HTTP/1.1\r\nHost: edge.example\r\nAuthorization: Bearer {}\r\n\
         X_Auth_Subject: root\r\nConnection: close, X-Auth-Subject\r\n\r\n",
        token("alice"),
    );
    let reply = raw(&proxy, &request).await;
    assert!(reply.ends_with("\r\n\r\nalice"), "{reply}");

    let request = "GET /open/x HTTP/1.1\r\nHost: edge.example\r\nX_Auth_Subject: root\r\n\
                   Connection: close\r\n\r\n";
    let reply = raw(&proxy, request).await;
    assert!(reply.ends_with("\r\n\r\n<none>"), "{reply}");
}

#[tokio::test]
async fn the_token_cookie_never_reaches_any_upstream() {
    let upstream = Upstream::echo().await;
    let proxy = proxy(&upstream.url(), &upstream.url()).await;
    let alice = token("alice");
    let bob = token("bob");
    let cookie = format!(
        "theme=dark; session_token={bob}; SESSION_TOKEN={bob}; session.token={bob}; \
         session_token[]={bob}; session%5Ftoken={bob}; lang=en"
    );
    // A route that reads the cookie, with the token from the header instead.
    let answer = get(
        &proxy.url("/api/x"),
        &[
            ("authorization", &format!("Bearer {alice}")),
            ("cookie", &cookie),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(upstream.last().headers["cookie"], "theme=dark; lang=en");
    // Routes that do not read it at all.
    for path in ["/open/x", &format!("/q/x?access_token={alice}")] {
        let answer = get(&proxy.url(path), &[("cookie", &cookie)]).await;
        assert_eq!(answer.status, 200, "{path}");
        let seen = upstream.last();
        assert_eq!(seen.headers["cookie"], "theme=dark; lang=en", "{path}");
        assert!(!format!("{seen:?}").contains(&bob), "{path}");
    }
    let answer = get(
        &proxy.url("/open/x"),
        &[("cookie", &format!("session_token={bob}"))],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(upstream.last().headers.get("cookie").is_none());
}

#[tokio::test]
async fn bearer_subprotocols_in_any_case_never_reach_the_upstream() {
    let upstream = Upstream::echo().await;
    let proxy = proxy(&upstream.url(), &upstream.url()).await;
    let alice = token("alice");

    for path in ["/ws/plain", "/open/x"] {
        let protocols = format!("chat, BEARER.{alice}, Bearer.{alice}, bEaReR.x");
        let answer = get(&proxy.url(path), &[("sec-websocket-protocol", &protocols)]).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        let seen = upstream.last();
        assert_eq!(seen.headers["sec-websocket-protocol"], "chat", "{path}");
        assert!(!format!("{seen:?}").contains(&alice), "{path}");
    }

    // The upgrade authenticates with `Bearer.` as it does with `bearer.`.
    let hub = WsHub::start().await;
    let proxy = self::proxy(&upstream.url(), &hub.url()).await;
    let url = proxy.url("/ws/chat").replace("http://", "ws://");
    let protocols = format!("Bearer.{alice}, chat");
    let (client, response) = ws_connect(&url, &[("sec-websocket-protocol", &protocols)])
        .await
        .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    drop(client);
    let seen = &hub.conns()[0];
    assert_eq!(seen.headers["sec-websocket-protocol"], "chat");
    assert!(!format!("{:?}", seen.headers).contains(&alice));
}

/// Query spellings that PHP, Rails, ASP.NET and `;`-splitting servers read as `access_token`.
fn spellings(secret: &str) -> Vec<String> {
    [
        "access_token[]",
        "access_token[x]",
        "access+token",
        "access%20token",
        "access.token",
        "ACCESS_TOKEN",
        "access%5Ftoken",
        "%20access_token",
        "access_token%00",
    ]
    .iter()
    .map(|name| format!("{name}={secret}"))
    .chain([format!("a=1;access_token={secret}")])
    .collect()
}

/// The real binary with its logs, behind which `/q` reads `query:access_token`, `/open`
/// reads nothing, and the ticket endpoint reads `query:desk_token`, which no route lists.
fn logged_proxy(upstream: &Upstream, key: &Key, dir: &std::path::Path) -> (Proc, String) {
    let config = dir.join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            r#"
{LOOPBACK_LISTENERS}
[log]
format = "json"
redact_params = ["code"]
[tickets]
endpoint = "/tickets"
tokens = ["header", "query:desk_token"]
{rs256}
[[route]]
path = "/q"
upstream = "{up}"
tokens = ["query:access_token"]
[[route]]
path = "/open"
upstream = "{up}"
auth = "none"
"#,
            rs256 = rs256_issuer(key),
            up = upstream.url()
        ),
    )
    .unwrap();
    Proc::start(&config)
}

#[tokio::test]
async fn credential_parameters_in_every_spelling_are_stripped_and_redacted() {
    let upstream = Upstream::echo().await;
    let key = Key::rsa("rsa1", "k1");
    let dir = tempfile::tempdir().unwrap();
    let (proc, addr) = logged_proxy(&upstream, &key, dir.path());
    let good = mint(&key, &claims(ISS, "api", json!({"sub": "alice"})));
    let mut secrets = Vec::new();
    for (i, spelling) in spellings("SECRETQ").iter().enumerate() {
        for route in ["/open", "/q"] {
            let secret = format!("SECRETQ{i}{}", &route[1..]);
            let spelled = spelling.replace("SECRETQ", &secret);
            let url = format!("http://{addr}{route}/x?keep=1&{spelled}&access_token={good}");
            let answer = get(&url, &[]).await;
            assert_eq!(answer.status, 200, "{url}");
            let seen = upstream.last();
            assert!(
                !seen.uri.contains(&secret),
                "{spelled} reached the upstream: {}",
                seen.uri
            );
            assert!(!seen.uri.contains(&good), "{}", seen.uri);
            assert!(seen.uri.contains("keep=1"), "{}", seen.uri);
            secrets.push(secret);
        }
    }
    // The ticket endpoint's own parameter is stripped on every route too.
    let answer = get(&format!("http://{addr}/open/x?desk_token=SECRETD"), &[]).await;
    assert_eq!(answer.status, 200);
    assert!(!upstream.last().uri.contains("SECRETD"));
    secrets.push("SECRETD".into());

    let (code, logs) = proc.terminate();
    assert_eq!(code, 0);
    assert!(!logs.contains(&good), "a token appears in the logs");
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "{secret} appears in the logs"
        );
    }
    assert!(logs.contains("access_token[]=REDACTED"), "{logs}");
}

#[tokio::test]
async fn the_ticket_endpoint_access_line_is_redacted() {
    let upstream = Upstream::echo().await;
    let key = Key::rsa("rsa1", "k1");
    let dir = tempfile::tempdir().unwrap();
    let (proc, addr) = logged_proxy(&upstream, &key, dir.path());
    let good = mint(&key, &claims(ISS, "api", json!({"sub": "alice"})));
    let desk = format!("http://{addr}/tickets?desk_token={good}");
    let answer = send(
        http::Request::post(&desk)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let (code, logs) = proc.terminate();
    assert_eq!(code, 0);
    assert!(!logs.contains(&good), "the token appears in the logs");
    let line = logs.lines().find(|l| l.contains("\"route\":\"/tickets\""));
    assert!(
        line.is_some_and(|l| l.contains("desk_token=REDACTED") && l.contains("\"status\":201")),
        "{logs}"
    );
}
