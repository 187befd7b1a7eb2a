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
mod support;
#[path = "differential/wire.rs"]
mod wire;

use std::fmt::Write as _;
use std::net::SocketAddr;

use backends::{Backend, Kind};
use corpus::Case;
use serde_json::{json, Value};
use support::*;

const ISS: &str = "https://sts.example/";
const SECRET: &str = "0123456789abcdef0123456789abcdef";
const ROUTES: [&str; 3] = ["/public", "/api", "/api/admin"];
const IDENTITY: [&str; 3] = ["x-auth-subject", "x-auth-roles", "x-auth-scopes"];
/// Forwarding headers gatehouse must drop outright, never pass on (folded names).
const DROPPED: [&str; 6] = [
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-forwarded-port",
    "x-forwarded-prefix",
];

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
    mint_with(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        &claims,
    )
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
[[issuer]]
name = "sts"
issuer = "{ISS}"
audiences = ["api"]
hmac_secret_env = "HS"

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

/// The route a path falls under: the longest route that is a whole-segment prefix of it,
/// ignoring ASCII case (as ASP.NET Core and gatehouse's default matching do).
fn route_of(path: &str) -> Option<&'static str> {
    route_of_exact_case(&path.to_ascii_lowercase())
}

fn route_of_exact_case(path: &str) -> Option<&'static str> {
    ROUTES
        .iter()
        .filter(|r| {
            path.strip_prefix(*r)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .max_by_key(|r| r.len())
        .copied()
}

/// A header name as WSGI, CGI, Rack and PHP fold it: `X_Auth_Subject`, `x-auth-subject` and
/// `HTTP_X_AUTH_SUBJECT` are all `x-auth-subject`.
fn fold(name: &str) -> String {
    let folded = name.to_ascii_lowercase().replace('_', "-");
    match folded.strip_prefix("http-") {
        Some(rest) => rest.to_string(),
        None => folded,
    }
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

/// Every way this exchange breaks "what gatehouse judged is what the backend acted on".
fn judge(
    sent: &Sent<'_>,
    reply: &Result<wire::Reply, String>,
    backend: &Backend,
    tokens: &Tokens,
) -> Vec<String> {
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => return vec![format!("no answer: {e}")],
    };
    if sent.case.control {
        let expected = route_of(&sent.target).is_some_and(|r| sent.caller.admitted_by(r));
        if expected != (reply.status == 200) {
            return vec![format!(
                "control request: expected {}, got {}",
                if expected { "200" } else { "a refusal" },
                reply.status
            )];
        }
    }
    match reply.status {
        200 => {}
        400 | 401 | 403 | 404 | 405 => return Vec::new(),
        other => return vec![format!("unexpected answer {other}: {}", clip(&reply.body))],
    }
    let Ok(report) = serde_json::from_str::<Value>(&reply.body) else {
        return vec![format!(
            "200 but not the backend's report: {}",
            clip(&reply.body)
        )];
    };
    let port = report["port"].as_u64().unwrap_or(0);
    let Some(index) = backend.ports.iter().position(|p| u64::from(*p) == port) else {
        return vec![format!("answered on port {port}, which no route uses")];
    };
    let applied = ROUTES[index];
    let mut problems = routing(applied, sent.caller, &report);
    problems.extend(identity(applied, sent.caller, &report));
    problems.extend(forwarding(&report));
    if tokens.all().iter().any(|t| reply.body.contains(t)) {
        problems.push(format!(
            "a token reached the backend, in {}",
            token_places(&report, tokens).join(", ")
        ));
    }
    problems
}

/// Where in the backend's report a token shows: the target, the query, or a header by name.
fn token_places(report: &Value, tokens: &Tokens) -> Vec<String> {
    let has = |text: &str| tokens.all().iter().any(|t| text.contains(t));
    let mut places: Vec<String> = ["target", "query"]
        .into_iter()
        .filter(|field| report[*field].as_str().is_some_and(has))
        .map(|field| format!("its {field}"))
        .collect();
    places.extend(
        headers(report)
            .into_iter()
            .filter(|(_, value)| has(value))
            .map(|(name, _)| format!("header {name}")),
    );
    if places.is_empty() {
        places.push("its report".into());
    }
    places
}

/// Every path reading must fall under the applied route, and so must the backend's own
/// dispatch where it reports one.
fn routing(applied: &str, caller: Caller, report: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if !caller.admitted_by(applied) {
        problems.push(format!(
            "gatehouse applied {applied}, which does not admit the caller"
        ));
    }
    let readings: Vec<(String, String)> = report["paths"]
        .as_object()
        .map(|paths| {
            paths
                .iter()
                .map(|(how, p)| (how.clone(), p.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    for (how, path) in readings {
        let acted = route_of(&path);
        if acted != Some(applied) {
            let acted_name = acted.unwrap_or("no route");
            let admitted = acted.is_some_and(|r| caller.admitted_by(r));
            problems.push(format!(
                "{how} = {path:?} is under {acted_name}, gatehouse applied {applied}{}",
                if admitted || acted.is_none() {
                    ""
                } else {
                    " (its policy refuses this caller)"
                }
            ));
        }
    }
    problems.extend(dispatch(applied, report));
    problems
}

/// A backend that routes by itself (the JDK's HttpServer contexts) reports the route it
/// dispatched to and the path it matched. It matches case-sensitively, so `/api/ADMIN` lands
/// in `/api` while gatehouse applied the stricter `/api/admin`: a difference of case alone
/// is not a walk-around. Any other dispatch outside the applied route is.
fn dispatch(applied: &str, report: &Value) -> Vec<String> {
    let Some(chosen) = report["dispatch"]["route"].as_str() else {
        return Vec::new();
    };
    let matched = report["dispatch"]["path"].as_str().unwrap_or("");
    let acted = route_of(chosen);
    let by_segments = route_of_exact_case(matched);
    if acted == Some(applied) || acted == by_segments {
        return Vec::new();
    }
    vec![format!(
        "the backend dispatched {matched:?} to its {chosen:?} handler, gatehouse applied {applied}"
    )]
}

/// The identity headers, in every spelling the backend exposes, must be exactly ours.
fn identity(applied: &str, caller: Caller, report: &Value) -> Vec<String> {
    let claims = caller.claims().filter(|_| applied != "/public");
    let mut problems = Vec::new();
    for (i, name) in IDENTITY.iter().enumerate() {
        let seen = header_values(report, name);
        let expected: Vec<String> = claims
            .map(|(sub, role, scope)| [sub, role, scope][i].to_string())
            .into_iter()
            .collect();
        if seen != expected {
            problems.push(format!(
                "{name}: backend saw {seen:?}, verified {expected:?}"
            ));
        }
    }
    problems
}

/// No forwarding header the client invented may reach the backend.
fn forwarding(report: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, value) in headers(report) {
        let folded = fold(&name);
        if DROPPED.contains(&folded.as_str()) {
            problems.push(format!("client's {name}: {value} reached the backend"));
        } else if value.contains(corpus::SPOOFED_IP) || value.contains(corpus::SPOOFED_HOST) {
            problems.push(format!(
                "client's forwarding value reached it as {name}: {value}"
            ));
        }
    }
    problems
}

fn headers(report: &Value) -> Vec<(String, String)> {
    report["headers"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|pair| {
                    let s = |i: usize| pair[i].as_str().unwrap_or("").to_string();
                    (s(0), s(1))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn header_values(report: &Value, folded: &str) -> Vec<String> {
    headers(report)
        .into_iter()
        .filter(|(name, _)| fold(name) == folded)
        .map(|(_, value)| value)
        .collect()
}

fn describe(sent: &Sent<'_>) -> String {
    let mut text = format!("{} {}", sent.case.method, sent.target);
    for (name, value) in &sent.headers {
        if name != "Authorization" {
            let _ = write!(text, " | {name}: {value}");
        }
    }
    text
}

fn clip(text: &str) -> String {
    text.chars().take(300).collect()
}

/// One row per request that went wrong, with every protocol and caller it went wrong for
/// and each distinct problem once.
fn table(backend: &str, violations: &[Violation]) -> String {
    let mut rows: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for v in violations {
        let key = format!("{:<34} {}", v.case, v.request);
        let index = match rows.iter().position(|(k, _, _)| *k == key) {
            Some(i) => i,
            None => {
                rows.push((key, Vec::new(), Vec::new()));
                rows.len() - 1
            }
        };
        let (_, who, problems) = &mut rows[index];
        let label = format!("{}/{:?}", v.proto, v.caller);
        if !who.contains(&label) {
            who.push(label);
        }
        if !problems.contains(&v.problem) {
            problems.push(v.problem.clone());
        }
    }
    let mut out = format!(
        "\n{} violation(s) in {} request(s): gatehouse judged one thing, {backend} acted on another\n",
        violations.len(),
        rows.len()
    );
    for (key, who, problems) in rows {
        let _ = writeln!(out, "\n{key}\n    sent as {}", who.join(", "));
        for problem in problems {
            let _ = writeln!(out, "    - {problem}");
        }
    }
    out
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

/// The rules the judge applies, pinned: a judge that passes everything would prove nothing.
#[test]
fn the_judge_folds_and_routes_as_frameworks_do() {
    assert_eq!(route_of("/api/ADMIN/x"), Some("/api/admin"));
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
