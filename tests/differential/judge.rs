//! The judge of tests/differential.rs: from what the backend reported, which route it acted
//! on, which identity and forwarding headers and which tokens reached it, and whether that
//! agrees with what gatehouse judged; and the table a failure prints.

#![allow(unreachable_pub)]

use std::fmt::Write as _;

use serde_json::Value;

use crate::backends::Backend;
use crate::{corpus, wire, Caller, Sent, Tokens, Violation, ROUTES};

pub const IDENTITY: [&str; 3] = ["x-auth-subject", "x-auth-roles", "x-auth-scopes"];
/// Forwarding headers gatehouse must drop outright, never pass on (folded names).
pub const DROPPED: [&str; 10] = [
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "script-name",
    "x-script-name",
    "proxy",
    "x-middleware-subrequest",
];

/// The route a path falls under: the longest route that is a whole-segment prefix of it,
/// ignoring ASCII case (as ASP.NET Core and gatehouse's default matching do).
pub fn route_of(path: &str) -> Option<&'static str> {
    route_of_exact_case(&path.to_ascii_lowercase())
}

pub fn route_of_exact_case(path: &str) -> Option<&'static str> {
    ROUTES
        .iter()
        .filter(|r| {
            path.strip_prefix(*r)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .max_by_key(|r| r.len())
        .copied()
}

/// A header name as WSGI, CGI, Rack and PHP fold it: `X_Auth_Subject`, `x-auth-subject`,
/// `X.Auth.Subject` (PHP) and `HTTP_X_AUTH_SUBJECT` are all `x-auth-subject`.
pub fn fold(name: &str) -> String {
    let folded = name.to_ascii_lowercase().replace(['_', '.'], "-");
    match folded.strip_prefix("http-") {
        Some(rest) => rest.to_string(),
        None => folded,
    }
}

/// Every way this exchange breaks "what gatehouse judged is what the backend acted on".
pub fn judge(
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
pub fn token_places(report: &Value, tokens: &Tokens) -> Vec<String> {
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
pub fn routing(applied: &str, caller: Caller, report: &Value) -> Vec<String> {
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
    // Windows' path rules, and Spring's matcher before 4.3.1, read every name without its
    // trailing dots and spaces (Spring: outer spaces): a reading of its own.
    let trimmed: Vec<(String, String)> = readings
        .iter()
        .map(|(how, path)| (format!("{how}, names trimmed"), trim_names(path)))
        .filter(|(_, t)| !readings.iter().any(|(_, p)| p == t))
        .collect();
    for (how, path) in readings.into_iter().chain(trimmed) {
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

/// `path` with every name's trailing dots and spaces and leading spaces removed; a name
/// that is nothing else disappears.
pub fn trim_names(path: &str) -> String {
    let names: Vec<&str> = path
        .split('/')
        .map(|name| match name {
            "." | ".." => name,
            _ => name.trim_start_matches(' ').trim_end_matches(['.', ' ']),
        })
        .filter(|name| !name.is_empty())
        .collect();
    format!("/{}", names.join("/"))
}

/// A backend that routes by itself (the JDK's HttpServer contexts) reports the route it
/// dispatched to and the path it matched. It matches case-sensitively, so `/api/ADMIN` lands
/// in `/api` while gatehouse applied the stricter `/api/admin`: a difference of case alone
/// is not a walk-around. Any other dispatch outside the applied route is.
pub fn dispatch(applied: &str, report: &Value) -> Vec<String> {
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
pub fn identity(applied: &str, caller: Caller, report: &Value) -> Vec<String> {
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
pub fn forwarding(report: &Value) -> Vec<String> {
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

pub fn headers(report: &Value) -> Vec<(String, String)> {
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

pub fn header_values(report: &Value, folded: &str) -> Vec<String> {
    headers(report)
        .into_iter()
        .filter(|(name, _)| fold(name) == folded)
        .map(|(_, value)| value)
        .collect()
}

pub fn describe(sent: &Sent<'_>) -> String {
    let mut text = format!("{} {}", sent.case.method, sent.target);
    for (name, value) in &sent.headers {
        if name != "Authorization" {
            let _ = write!(text, " | {name}: {value}");
        }
    }
    text
}

pub fn clip(text: &str) -> String {
    text.chars().take(300).collect()
}

/// One row per request that went wrong, with every protocol and caller it went wrong for
/// and each distinct problem once.
pub fn table(backend: &str, violations: &[Violation]) -> String {
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
