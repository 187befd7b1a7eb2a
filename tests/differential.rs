//! Differential test: what gatehouse judges is what the upstream acts on (issue 10, item 5).
//!
//! A corpus of request targets and header sets (`tests/differential/corpus.rs`) goes through
//! gatehouse, byte for byte over HTTP/1.1 and in part over h2c, to real, unmodified backends
//! (`tests/differential/`): Python's `http.server` and `wsgiref`, Node's `http`, and the JDK's
//! `com.sun.net.httpserver`. Each backend only reports what its framework resolved: the path
//! in every reading an app acts on, and the headers as the framework exposes them.
//!
//! Gatehouse routes `/public` (no auth), `/api` (scope `read`) and `/api/admin` (role `admin`)
//! each to its own listener of the backend, so the port that answers is the route gatehouse
//! applied. For every request it forwarded, and every caller (anonymous, reader, admin):
//! - every path reading of the backend falls, by the same longest-whole-segment-prefix rule
//!   (ignoring case), under the route gatehouse applied, and that route admits the caller;
//!   where the backend routes by itself (the JDK's HttpServer contexts), its dispatch must too;
//! - the identity headers the backend saw, in any spelling (`X_Auth_Subject`,
//!   `HTTP_X_AUTH_SUBJECT`), are exactly the verified ones, or absent without authentication;
//! - no forwarding header the client invented reaches it, and no token does, in any cookie or
//!   query spelling.
//!
//! Refusals (400, 401, 403, 404, 405) are fine. Every violation is printed in one table.
//! Needs `python3`, `node` and a JDK (`java`, `javac`), all from `.ci/setup`; a missing one is
//! a skip outside CI and a failure under `CI=true`.

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "differential/backends.rs"]
mod backends;
#[path = "differential/corpus.rs"]
mod corpus;
#[path = "differential/judge.rs"]
mod judge;
mod support;
#[path = "differential/wire.rs"]
mod wire;

use std::net::SocketAddr;

use backends::{Backend, Kind};
use corpus::Case;
use judge::{describe, judge, table};
use serde_json::json;
use support::*;

const ROUTES: [&str; 3] = ["/public", "/api", "/api/admin"];

#[derive(Clone, Copy, PartialEq, Debug)]
enum Caller {
    Anonymous,
    Reader,
    Admin,
}

impl Caller {
    const ALL: [Caller; 3] = [Caller::Anonymous, Caller::Reader, Caller::Admin];

    /// `(sub, role, scope)` of its token.
    fn claims(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Caller::Anonymous => None,
            Caller::Reader => Some(("reader", "user", "read")),
            Caller::Admin => Some(("admin", "admin", "read")),
        }
    }

    /// Whether the policy of `route` admits this caller.
    fn admitted_by(self, route: &str) -> bool {
        match route {
            "/public" => true,
            "/api" => self.claims().is_some_and(|(_, _, scope)| scope == "read"),
            "/api/admin" => self.claims().is_some_and(|(_, role, _)| role == "admin"),
            _ => false,
        }
    }
}

fn token(sub: &str, role: &str, scope: &str) -> String {
    let claims = claims(
        ISS,
        "api",
        json!({"sub": sub, "role": role, "scope": scope}),
    );
    mint_hs(&claims)
}

/// The callers' tokens, and a stray valid one an anonymous caller smuggles in token spellings.
struct Tokens {
    reader: String,
    admin: String,
    stray: String,
}

impl Tokens {
    fn mint() -> Tokens {
        Tokens {
            reader: token("reader", "user", "read"),
            admin: token("admin", "admin", "read"),
            stray: token("stray", "admin", "read"),
        }
    }

    fn of(&self, caller: Caller) -> Option<&str> {
        match caller {
            Caller::Anonymous => None,
            Caller::Reader => Some(&self.reader),
            Caller::Admin => Some(&self.admin),
        }
    }

    /// `text` with every token replaced by its name, for the violation table.
    fn hide(&self, text: &str) -> String {
        text.replace(&self.reader, "<reader-token>")
            .replace(&self.admin, "<admin-token>")
            .replace(&self.stray, "<stray-token>")
    }

    fn all(&self) -> [&str; 3] {
        [&self.reader, &self.admin, &self.stray]
    }
}

async fn proxy_for(backend: &Backend) -> TestProxy {
    let tokens = r#"["header", "query:access_token", "cookie:gh_token"]"#;
    let toml = format!(
        r#"
{HS_ISSUER}

[identity]
headers = {{ "X-Auth-Subject" = "sub", "X-Auth-Roles" = "role", "X-Auth-Scopes" = "scope" }}

[[route]]
path = "/public"
upstream = "http://127.0.0.1:{p0}"
auth = "none"

[[route]]
path = "/api"
upstream = "http://127.0.0.1:{p1}"
tokens = {tokens}
require.scopes = ["read"]

[[route]]
path = "/api/admin"
upstream = "http://127.0.0.1:{p2}"
tokens = {tokens}
require.roles = ["admin"]
"#,
        p0 = backend.ports[0],
        p1 = backend.ports[1],
        p2 = backend.ports[2],
    );
    TestProxy::start_with_secrets(&toml, &[("HS", SECRET)]).await
}

/// One request of the run, as sent.
struct Sent<'a> {
    case: &'a Case,
    caller: Caller,
    proto: &'static str,
    target: String,
    headers: Vec<(String, String)>,
}

struct Violation {
    proto: &'static str,
    caller: Caller,
    case: String,
    request: String,
    problem: String,
}

/// Runs the whole corpus against one backend kind; panics with the table of violations.
async fn differential(kind: &Kind) {
    if let Some(missing) = kind.missing() {
        if !require_component(false, &format!("differential {}: {missing}", kind.name)) {
            return;
        }
    }
    let backend = Backend::start(kind, &ROUTES);
    let proxy = proxy_for(&backend).await;
    let tokens = Tokens::mint();
    let mut violations = Vec::new();
    let mut forwarded = 0;
    for case in corpus::all() {
        for caller in Caller::ALL {
            for proto in ["http/1.1", "h2c"] {
                let Some(sent) = prepare(&case, caller, proto, &tokens, proxy.addr) else {
                    continue;
                };
                let reply = send(proxy.addr, &sent).await;
                let problems = judge(&sent, &reply, &backend, &tokens);
                forwarded += usize::from(matches!(&reply, Ok(r) if r.status == 200));
                violations.extend(problems.into_iter().map(|problem| Violation {
                    proto,
                    caller,
                    case: case.name.clone(),
                    request: tokens.hide(&describe(&sent)),
                    problem: tokens.hide(&problem),
                }));
            }
        }
    }
    proxy.shutdown().await;
    assert!(forwarded > 0, "{}: nothing was forwarded at all", kind.name);
    assert!(violations.is_empty(), "{}", table(kind.name, &violations));
}

/// The request for `case` as `caller` over `proto`, or `None` when the pair is not sent:
/// h2c only for cases that can be spelled in it, and an anonymous caller's stray token only
/// on `/public` (elsewhere it would authenticate them, which is no walk-around).
fn prepare<'a>(
    case: &'a Case,
    caller: Caller,
    proto: &'static str,
    tokens: &Tokens,
    proxy: SocketAddr,
) -> Option<Sent<'a>> {
    if proto == "h2c" && !case.h2 {
        return None;
    }
    if caller == Caller::Anonymous && case.carries_token() && !case.target.starts_with("/public") {
        return None;
    }
    let smuggled = tokens.of(caller).unwrap_or(&tokens.stray);
    let fill = |s: &str| {
        s.replace("{authority}", &proxy.to_string())
            .replace("{token}", smuggled)
    };
    let mut headers: Vec<(String, String)> = case
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), fill(v)))
        .collect();
    if let Some(token) = tokens.of(caller) {
        headers.push(("Authorization".into(), format!("Bearer {token}")));
    }
    Some(Sent {
        case,
        caller,
        proto,
        target: fill(&case.target),
        headers,
    })
}

async fn send(proxy: SocketAddr, sent: &Sent<'_>) -> Result<wire::Reply, String> {
    let wire = wire::Wire {
        method: sent.case.method,
        target: &sent.target,
        headers: &sent.headers,
    };
    match sent.proto {
        "h2c" => wire::http2(proxy, &wire).await,
        _ => wire::http1(proxy, &wire).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_server_acts_on_what_gatehouse_judged() {
    differential(&backends::PYTHON_HTTP_SERVER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_wsgiref_acts_on_what_gatehouse_judged() {
    differential(&backends::PYTHON_WSGIREF).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_http_acts_on_what_gatehouse_judged() {
    differential(&backends::NODE_HTTP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_httpserver_acts_on_what_gatehouse_judged() {
    differential(&backends::JAVA_HTTPSERVER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rack_on_webrick_acts_on_what_gatehouse_judged() {
    differential(&backends::RACK_WEBRICK).await;
}

/// The rules the judge applies, pinned: a judge that passes everything would prove nothing.
#[test]
fn the_judge_folds_and_routes_as_frameworks_do() {
    use judge::{dispatch, fold, forwarding, identity, route_of, routing, trim_names};
    assert_eq!(route_of("/api/ADMIN/x"), Some("/api/admin"));
    assert_eq!(trim_names("/api/admin. /x"), "/api/admin/x");
    assert_eq!(trim_names("/api/ admin../..."), "/api/admin");
    assert_eq!(trim_names("/a/../b/./c"), "/a/../b/./c");
    let report = json!({"paths": {"raw": "/api/admin."}});
    assert_eq!(routing("/api", Caller::Admin, &report).len(), 1);
    assert_eq!(route_of("/api/adminx"), Some("/api"));
    assert_eq!(route_of("/api/admin;x=1"), Some("/api"));
    assert_eq!(route_of("/public/../api/admin"), Some("/public"));
    assert_eq!(route_of("//api/admin"), None);
    assert_eq!(fold("HTTP_X_AUTH_SUBJECT"), "x-auth-subject");
    assert_eq!(fold("X_Auth_Subject"), "x-auth-subject");
    assert!(Caller::Admin.admitted_by("/api/admin"));
    assert!(!Caller::Reader.admitted_by("/api/admin"));
    assert!(!Caller::Anonymous.admitted_by("/api"));
    let report = json!({"headers": [["HTTP_X_AUTH_SUBJECT", "reader,root"]]});
    assert_eq!(
        identity("/api", Caller::Reader, &report)[0],
        "x-auth-subject: backend saw [\"reader,root\"], verified [\"reader\"]"
    );
    let report =
        json!({"headers": [["x_forwarded_for", "203.0.113.66"], ["X-Real-IP", "1.2.3.4"]]});
    assert_eq!(forwarding(&report).len(), 2);
    let dispatched = |applied: &str, route: &str, path: &str| {
        dispatch(
            applied,
            &json!({"dispatch": {"route": route, "path": path}}),
        )
    };
    assert_eq!(dispatched("/api", "/api/admin", "/api/admin;x=1").len(), 1);
    assert_eq!(dispatched("/api", "/api/admin", "/api/adminx").len(), 1);
    assert!(dispatched("/api/admin", "/api", "/api/ADMIN").is_empty());
    assert!(dispatched("/api", "/", "/API/x").is_empty());
}
