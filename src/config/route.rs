//! `[[route]]` validation: path, upstream, token sources, policy and WebSocket settings.

use super::fields::{duration, duration_or_zero, ConfigErrors};
use super::types::{AuthMode, RouteConfig, TokenSource, UpstreamAuth};
use super::upstream::{validate_endpoints, Affinity, Endpoints, RawEndpoints};
use crate::config::FileRoute;

pub(super) fn validate_route(
    e: &mut ConfigErrors,
    path: &str,
    raw: &FileRoute,
    have_issuers: bool,
    ticket_param: Option<&str>,
) -> Option<RouteConfig> {
    let errors_before = e.count();
    let route_path = normalize_route_path(e, &format!("{path}.path"), &raw.path);
    let endpoints = endpoints(e, path, raw);
    let auth = auth_mode(e, path, raw);
    let tokens = tokens(e, path, raw, ticket_param);
    check_authenticates(e, path, auth, tokens.is_empty(), have_issuers);
    let upstream_auth = upstream_auth(e, path, raw);
    check_websocket(e, path, raw);
    let allowed_origins = super::cors::validate_origins(e, path, &raw.allowed_origins);
    let cors = super::cors::validate_cors(e, path, &raw.cors, &allowed_origins);
    let timeout =
        |e: &mut ConfigErrors, key: &str, value: &str| duration(e, &format!("{path}.{key}"), value);
    let route = RouteConfig {
        path: route_path.unwrap_or_default(),
        upstream: endpoints.as_ref().map(first_url).unwrap_or_default(),
        endpoints: endpoints.unwrap_or_else(|| Endpoints {
            scheme: http::uri::Scheme::HTTP,
            authorities: Vec::new(),
            resolve_every: None,
            affinity: Affinity::None,
            affinity_key_file: None,
        }),
        auth,
        tokens,
        websocket: raw.websocket,
        upstream_auth,
        require_scopes: raw.require.scopes.clone(),
        require_roles: raw.require.roles.clone(),
        require_claims: super::claims::required_claims(e, path, &raw.require.claims),
        allowed_origins,
        close_on_expiry: raw.close_on_expiry,
        first_message_timeout: timeout(e, "first_message_timeout", &raw.first_message_timeout),
        max_message_bytes: raw.max_message_bytes,
        idle_timeout: timeout(e, "idle_timeout", &raw.idle_timeout),
        strip_prefix: raw.strip_prefix,
        connect_timeout: timeout(e, "connect_timeout", &raw.connect_timeout),
        timeout: timeout(e, "timeout", &raw.timeout),
        upstream_ca_file: raw.upstream_ca_file.clone(),
        upstream_http2: raw.upstream_http2,
        upstream_http2_max_streams: within(
            e,
            path,
            "upstream_http2_max_streams",
            raw.upstream_http2_max_streams,
            1000,
        ),
        upstream_http2_max_connections: within(
            e,
            path,
            "upstream_http2_max_connections",
            raw.upstream_http2_max_connections,
            1024,
        ),
        upstream_max_idle: raw.upstream_max_idle,
        upstream_idle_timeout: timeout(e, "upstream_idle_timeout", &raw.upstream_idle_timeout),
        max_body_bytes: raw.max_body_bytes,
        // Zero: no cap, the session lasts as long as its token.
        max_lifetime: Some(duration_or_zero(
            e,
            &format!("{path}.max_lifetime"),
            &raw.max_lifetime,
        ))
        .filter(|d| !d.is_zero()),
        case_sensitive: raw.case_sensitive,
        cors,
    };
    (e.count() == errors_before).then_some(route)
}

/// A count that must be between 1 and `max`.
fn within(e: &mut ConfigErrors, path: &str, key: &str, value: usize, max: usize) -> usize {
    if !(1..=max).contains(&value) {
        e.push(
            format!("{path}.{key}"),
            format!("must be between 1 and {max}"),
        );
    }
    value
}

/// `auth`: whether the route demands, accepts or ignores a token.
fn auth_mode(e: &mut ConfigErrors, path: &str, raw: &FileRoute) -> AuthMode {
    match raw.auth.as_str() {
        "required" => AuthMode::Required,
        "optional" => AuthMode::Optional,
        "none" => AuthMode::None,
        other => {
            e.push(
                format!("{path}.auth"),
                format!("{other:?} is not required, optional or none"),
            );
            AuthMode::Required
        }
    }
}

/// A route that authenticates needs a token source and something to validate tokens with.
fn check_authenticates(
    e: &mut ConfigErrors,
    path: &str,
    auth: AuthMode,
    no_tokens: bool,
    have_issuers: bool,
) {
    if auth != AuthMode::None {
        if no_tokens {
            e.push(format!("{path}.tokens"), "list at least one token source");
        }
        if !have_issuers {
            e.push(
                format!("{path}.auth"),
                "authenticating routes need at least one [[issuer]] or [[introspection]]",
            );
        }
    }
}

/// `upstream_auth`: whether the caller's token is forwarded as a bearer token.
fn upstream_auth(e: &mut ConfigErrors, path: &str, raw: &FileRoute) -> UpstreamAuth {
    match raw.upstream_auth.as_str() {
        "none" => UpstreamAuth::None,
        "bearer" => UpstreamAuth::Bearer,
        other => {
            e.push(
                format!("{path}.upstream_auth"),
                format!("{other:?} is not none or bearer"),
            );
            UpstreamAuth::None
        }
    }
}

fn endpoints(e: &mut ConfigErrors, path: &str, raw: &FileRoute) -> Option<Endpoints> {
    if let Some(ca) = &raw.upstream_ca_file {
        if !ca.is_file() {
            let why = crate::files::not_readable(ca);
            e.push(format!("{path}.upstream_ca_file"), why);
        }
    }
    let raw = RawEndpoints {
        upstream: &raw.upstream,
        discovery: raw.upstream_discovery.as_ref(),
        affinity: &raw.affinity,
        affinity_key_file: raw.affinity_key_file.as_ref(),
    };
    validate_endpoints(e, path, raw)
}

fn first_url(endpoints: &Endpoints) -> http::Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(endpoints.scheme.clone());
    parts.authority = endpoints.authorities.first().cloned();
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    http::Uri::from_parts(parts).unwrap_or_default()
}

fn tokens(
    e: &mut ConfigErrors,
    path: &str,
    raw: &FileRoute,
    ticket_param: Option<&str>,
) -> Vec<TokenSource> {
    let tokens: Vec<TokenSource> = raw
        .tokens
        .iter()
        .enumerate()
        .filter_map(|(i, t)| token_source(e, &format!("{path}.tokens[{i}]"), t, ticket_param))
        .collect();
    for (i, source) in tokens.iter().enumerate() {
        let key = format!("{path}.tokens[{i}]");
        match source {
            TokenSource::Subprotocol | TokenSource::FirstMessage if !raw.websocket => {
                e.push(
                    key,
                    "this source exists only on WebSocket upgrades: set websocket = true",
                );
            }
            TokenSource::FirstMessage if i + 1 != tokens.len() => {
                e.push(key, "first-message must come last: it is the fallback when nothing else carried a token");
            }
            _ => {}
        }
    }
    tokens
}

/// The cookie-route Origin rule and the WebSocket message limit.
fn check_websocket(e: &mut ConfigErrors, path: &str, raw: &FileRoute) {
    check_cookie_origins(e, path, raw);
    if raw.max_message_bytes < 125 {
        e.push(
            format!("{path}.max_message_bytes"),
            "must be at least 125 (a control frame)",
        );
    }
}

/// Browsers attach cookies to a WebSocket upgrade from any site's page and CORS does not
/// apply to it, so a WebSocket route that takes its token from a cookie would let any site
/// act as the signed-in user (cross-site WebSocket hijacking) unless Origin is checked.
fn check_cookie_origins(e: &mut ConfigErrors, path: &str, raw: &FileRoute) {
    let Some(cookie) = raw.tokens.iter().find(|t| t.starts_with("cookie:")) else {
        return;
    };
    let open_to_all =
        raw.allowed_origins.is_empty() || raw.allowed_origins.iter().any(|o| o == "*");
    if raw.websocket && raw.auth != "none" && open_to_all {
        e.push(
            format!("{path}.allowed_origins"),
            format!(
                "this WebSocket route reads {cookie}, which the browser sends on upgrades from \
                 any site: list the sites allowed to connect (not \"*\"), like \
                 allowed_origins = [\"https://app.example.com\"], or drop the cookie source"
            ),
        );
    }
}

/// A route's `path` as routing compares it (no trailing slash but for `/`); `None` after
/// pushing the error when it is not a plain path prefix. Public for the fuzz targets.
pub fn normalize_route_path(e: &mut ConfigErrors, key: &str, raw: &str) -> Option<String> {
    if !raw.starts_with('/') {
        e.push(key, "must start with /");
        return None;
    }
    if raw.contains(['?', '#', '*']) || raw.contains("//") {
        e.push(
            key,
            "a plain path prefix, without query, fragment, wildcards or empty segments",
        );
        return None;
    }
    let trimmed = raw.trim_end_matches('/');
    Some(if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    })
}

/// One `tokens` entry as written (`header`, `query:NAME`, ...); `None` after pushing the
/// error. Public for the fuzz targets, which build routes with it.
pub fn token_source(
    e: &mut ConfigErrors,
    key: &str,
    raw: &str,
    ticket_param: Option<&str>,
) -> Option<TokenSource> {
    let (kind, name) = match raw.split_once(':') {
        Some((kind, name)) => (kind, Some(name)),
        None => (raw, None),
    };
    // Names are matched as written, so they must not need percent-encoding: a `+` or `%`
    // would let the name match differently here and in the redactor.
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    };
    match (kind, name) {
        ("header", None) => Some(TokenSource::Header),
        ("query", Some(n)) if valid_name(n) => Some(TokenSource::Query(n.into())),
        ("cookie", Some(n)) if valid_name(n) => Some(TokenSource::Cookie(n.into())),
        ("query" | "cookie", _) => {
            e.push(key, format!("write {kind}:NAME, like {kind}:access_token"));
            None
        }
        ("subprotocol", None) => Some(TokenSource::Subprotocol),
        ("first-message", None) => Some(TokenSource::FirstMessage),
        ("ticket", None) => match ticket_param {
            Some(param) => Some(TokenSource::Ticket(param.to_string())),
            None => {
                e.push(key, "the ticket source needs a [tickets] table");
                None
            }
        },
        _ => {
            e.push(
                key,
                format!(
                    "unknown token source {raw:?}; use header, query:NAME, cookie:NAME, subprotocol, ticket or first-message"
                ),
            );
            None
        }
    }
}

#[cfg(test)]
pub(crate) fn validate_route_for_tests(raw: &FileRoute) -> RouteConfig {
    let mut errors = ConfigErrors::default();
    let route = validate_route(&mut errors, "route", raw, true, Some("ticket"));
    assert!(errors.messages().is_empty(), "{errors}");
    route.unwrap()
}
