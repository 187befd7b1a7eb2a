//! `[[route]] cors` and `allowed_origins`: how a route treats browsers on other origins.
//!
//! `cors = "pass"` (the default) sends CORS preflights to the upstream unauthenticated and
//! stripped of every credential, so an unchanged backend keeps its own CORS policy.
//! `cors = "answer"`, or a `[route.cors]` table, has gatehouse answer preflights itself
//! for the route's `allowed_origins` and set the CORS headers of every response.
//!
//! Origins are compared whole (scheme, host and port), never by prefix or substring; the
//! list is written in the form browsers send (`https://app.example.com`, no default port,
//! lower case), which [`normalize_origin`] makes of what the operator wrote.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::fields::{duration_or_zero, http_url, ConfigErrors};

/// What `Access-Control-Allow-Methods` names when a table does not say.
const DEFAULT_METHODS: &[&str] = &["GET", "POST", "DELETE"];
/// What `Access-Control-Allow-Headers` names when a table does not say: what the SignalR
/// client sends besides CORS-safelisted headers.
const DEFAULT_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "x-requested-with",
    "x-signalr-user-agent",
];

/// `cors` as written: `"pass"`, `"answer"`, or a table (answer, with these settings).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum FileCors {
    Mode(String),
    Table(FileCorsTable),
}

impl Default for FileCors {
    fn default() -> Self {
        FileCors::Mode("pass".into())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct FileCorsTable {
    /// `"answer"` (the default for a table) or `"pass"` (then nothing else may be set).
    pub mode: String,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age: String,
}

impl Default for FileCorsTable {
    fn default() -> Self {
        Self {
            mode: "answer".into(),
            allowed_methods: DEFAULT_METHODS.iter().map(|m| m.to_string()).collect(),
            allowed_headers: DEFAULT_HEADERS.iter().map(|h| h.to_string()).collect(),
            expose_headers: Vec::new(),
            allow_credentials: false,
            max_age: "10m".into(),
        }
    }
}

// A string or a table. Written by hand rather than `#[serde(untagged)]`, which would
// buffer the table and hide its unknown keys from the unknown-key report.
impl<'de> Deserialize<'de> for FileCors {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CorsVisitor;
        impl<'de> Visitor<'de> for CorsVisitor {
            type Value = FileCors;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"pass\", \"answer\" or a table")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileCors, E> {
                Ok(FileCors::Mode(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileCors, A::Error> {
                FileCorsTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(FileCors::Table)
            }
        }
        deserializer.deserialize_any(CorsVisitor)
    }
}

/// A route's CORS mode, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsConfig {
    /// Preflights go upstream without credentials; the backend answers them.
    Pass,
    /// Gatehouse answers preflights and sets CORS headers for `allowed_origins`.
    Answer(CorsAnswer),
}

/// What gatehouse says to an allowed origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsAnswer {
    pub methods: Vec<Method>,
    pub headers: Vec<HeaderName>,
    pub expose: Vec<HeaderName>,
    pub credentials: bool,
    pub max_age: Duration,
}

/// Validates `cors` against the route's (already normalised) `allowed_origins`.
pub(super) fn validate_cors(
    e: &mut ConfigErrors,
    path: &str,
    raw: &FileCors,
    origins: &[String],
) -> CorsConfig {
    let key = format!("{path}.cors");
    let Some(table) = answer_table(e, &key, raw) else {
        return CorsConfig::Pass;
    };
    check_origins(e, path, &table, origins);
    CorsConfig::Answer(CorsAnswer {
        methods: methods(e, &format!("{key}.allowed_methods"), &table.allowed_methods),
        headers: header_names(e, &format!("{key}.allowed_headers"), &table.allowed_headers),
        expose: header_names(e, &format!("{key}.expose_headers"), &table.expose_headers),
        credentials: table.allow_credentials,
        // Zero: browsers ask again before every request (`Access-Control-Max-Age: 0`).
        max_age: duration_or_zero(e, &format!("{key}.max_age"), &table.max_age),
    })
}

/// The settings gatehouse answers preflights with; `None` when CORS passes to the
/// upstream (`cors = "pass"`, or a mode we do not know, which is an error).
fn answer_table(e: &mut ConfigErrors, key: &str, raw: &FileCors) -> Option<FileCorsTable> {
    let table = match raw {
        FileCors::Mode(mode) if mode == "pass" => return None,
        FileCors::Mode(mode) if mode == "answer" => FileCorsTable::default(),
        FileCors::Mode(other) => {
            e.push(key, format!("{other:?} is not pass, answer or a table"));
            return None;
        }
        FileCors::Table(t) => t.clone(),
    };
    match table.mode.as_str() {
        "answer" => Some(table),
        "pass" => {
            e.push(
                format!("{key}.mode"),
                "pass takes no other settings: write cors = \"pass\"",
            );
            None
        }
        other => {
            e.push(
                format!("{key}.mode"),
                format!("{other:?} is not pass or answer"),
            );
            None
        }
    }
}

/// Answering needs listed origins, and credentials never go to any origin (`"*"`).
fn check_origins(e: &mut ConfigErrors, path: &str, table: &FileCorsTable, origins: &[String]) {
    if origins.is_empty() {
        e.push(
            format!("{path}.allowed_origins"),
            "gatehouse answers CORS for these origins: list them, like \
             allowed_origins = [\"https://app.example.com\"]",
        );
    }
    if table.allow_credentials && origins.iter().any(|o| o == "*") {
        e.push(
            format!("{path}.cors.allow_credentials"),
            "credentials cannot be allowed for any origin (\"*\"): list the origins",
        );
    }
}

fn methods(e: &mut ConfigErrors, key: &str, raw: &[String]) -> Vec<Method> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let parsed = Method::from_bytes(m.as_bytes())
                .ok()
                .filter(|_| !m.is_empty());
            if parsed.is_none() {
                e.push(format!("{key}[{i}]"), "not a method name");
            }
            parsed
        })
        .collect()
}

fn header_names(e: &mut ConfigErrors, key: &str, raw: &[String]) -> Vec<HeaderName> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let parsed = HeaderName::from_bytes(h.as_bytes()).ok();
            if parsed.is_none() || h == "*" {
                e.push(format!("{key}[{i}]"), "a header name (no wildcards)");
                return None;
            }
            parsed
        })
        .collect()
}

/// `allowed_origins`, checked and written as a browser sends them; errors name each entry.
pub(super) fn validate_origins(e: &mut ConfigErrors, path: &str, raw: &[String]) -> Vec<String> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, origin)| {
            if origin != "*" && origin.contains('*') {
                // Matched as written, it would never match: refuse it rather than let an
                // operator believe a pattern is in force.
                e.push(
                    format!("{path}.allowed_origins[{i}]"),
                    "patterns are not supported: list each origin (scheme://host[:port]), \
                     or \"*\" alone for any",
                );
                return None;
            }
            let normalized = normalize_origin(origin);
            if normalized.is_none() {
                e.push(
                    format!("{path}.allowed_origins[{i}]"),
                    "an origin is scheme://host[:port]",
                );
            }
            normalized
        })
        .collect()
}

/// `*`, or `scheme://host[:port]` in lower case without a default port; `None` for
/// anything else (a path, a trailing slash, a query, user info).
pub fn normalize_origin(raw: &str) -> Option<String> {
    if raw == "*" {
        return Some(raw.into());
    }
    let uri = http_url(raw)?;
    let authority = uri.authority()?;
    if uri.path() != "/" || raw.ends_with('/') || uri.query().is_some() || raw.contains('@') {
        return None;
    }
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = authority.host().to_ascii_lowercase();
    let default_port = if scheme == "https" { 443 } else { 80 };
    Some(match authority.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Whether a request's `Origin` is on the list: `*`, or one entry equal to it as a whole
/// (ASCII case folded; browsers send origins in lower case anyway).
pub fn origin_listed(list: &[String], origin: &HeaderValue) -> bool {
    list.iter().any(|o| o == "*") || origin_named(list, origin)
}

/// Whether the list names `Origin` itself; `*` names no origin.
pub fn origin_named(list: &[String], origin: &HeaderValue) -> bool {
    list.iter()
        .any(|o| o != "*" && o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_to_what_browsers_send() {
        let n = |s: &str| normalize_origin(s);
        assert_eq!(
            n("HTTPS://App.Example.com:443").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(n("http://a.test:80").as_deref(), Some("http://a.test"));
        assert_eq!(
            n("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(n("*").as_deref(), Some("*"));
        for bad in [
            "https://a.test/",
            "https://a.test/x",
            "https://a.test?x=1",
            "ftp://a.test",
            "a.test",
            "null",
            "https://u@a.test",
            "",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }

    #[test]
    fn origins_match_whole_never_by_prefix_or_substring() {
        let list = vec!["https://app.example.com".to_string()];
        let listed = |o: &'static str| origin_listed(&list, &HeaderValue::from_static(o));
        assert!(listed("https://app.example.com"));
        assert!(listed("https://APP.example.com"));
        for other in [
            "https://app.example.com.evil.test",
            "https://evil-app.example.com",
            "https://app.example.co",
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://app.example.com/",
            "null",
            "",
        ] {
            assert!(!listed(other), "{other} matched");
        }
        assert!(origin_listed(
            &["*".to_string()],
            &HeaderValue::from_static("https://x.test")
        ));
    }

    fn check(raw: FileCors, origins: &[&str]) -> (CorsConfig, Vec<String>) {
        let mut e = ConfigErrors::default();
        let origins: Vec<String> = origins.iter().map(|s| s.to_string()).collect();
        let cors = validate_cors(&mut e, "route[0]", &raw, &origins);
        (cors, e.messages().to_vec())
    }

    #[test]
    fn modes_and_their_errors() {
        assert_eq!(check(FileCors::default(), &[]).0, CorsConfig::Pass);
        let (answer, errors) = check(FileCors::Mode("answer".into()), &["https://a.test"]);
        assert!(errors.is_empty(), "{errors:?}");
        let CorsConfig::Answer(answer) = answer else {
            panic!("not answer");
        };
        assert_eq!(answer.methods, [Method::GET, Method::POST, Method::DELETE]);
        assert_eq!(answer.max_age, Duration::from_secs(600));
        assert!(!answer.credentials);

        let (_, errors) = check(FileCors::Mode("answer".into()), &[]);
        assert!(
            errors[0].starts_with("route[0].allowed_origins:"),
            "{errors:?}"
        );
        let (_, errors) = check(FileCors::Mode("bypass".into()), &[]);
        assert!(errors[0].starts_with("route[0].cors:"), "{errors:?}");

        let star = FileCors::Table(FileCorsTable {
            allow_credentials: true,
            ..FileCorsTable::default()
        });
        let (_, errors) = check(star, &["*"]);
        assert!(
            errors[0].starts_with("route[0].cors.allow_credentials:"),
            "{errors:?}"
        );
        let bad = FileCors::Table(FileCorsTable {
            allowed_methods: vec!["GET POST".into()],
            allowed_headers: vec!["*".into()],
            max_age: "soon".into(),
            ..FileCorsTable::default()
        });
        let (_, errors) = check(bad, &["https://a.test"]);
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn an_origin_pattern_is_an_error_not_a_literal() {
        let mut e = ConfigErrors::default();
        let raw = [
            "https://*.example.com",
            "*",
            "https://app.example.com",
            "http://a*",
        ]
        .map(String::from);
        let kept = validate_origins(&mut e, "route[0]", &raw);
        assert_eq!(kept, ["*", "https://app.example.com"]);
        let errors = e.messages();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("route[0].allowed_origins[0]: patterns are not supported"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("route[0].allowed_origins[3]:"),
            "{errors:?}"
        );
    }
}
