//! CORS on the request path, for routes and the ticket endpoint alike: what a preflight
//! is, gatehouse's answer to one, and the CORS headers of every answer. Passing a
//! preflight upstream is `preflight.rs`.
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`, and no body)
//! is never asked for a token: browsers send none on it (Fetch, "CORS-preflight request").
//! With `cors = "pass"` it goes upstream as an anonymous request from which every
//! credential gatehouse knows is removed first, so an unauthenticated request can never
//! carry one to the backend: `Authorization`, `Proxy-Authorization`, every `Cookie` (a
//! browser's preflight has none, so any cookie on one is not a browser's), token and ticket
//! query parameters, `bearer.` subprotocols and client identity headers. It costs the
//! upstream no more than any request: it counts against `limits.requests_per_ip_per_second`
//! and carries no body (an `OPTIONS` with a body is not a preflight and is authenticated).
//! When the route lists `allowed_origins`, a preflight from another origin is refused here.
//!
//! With `cors = "answer"` gatehouse answers preflights for the listed origins and owns the
//! CORS headers of every response on the route: the upstream's `Access-Control-*` headers
//! are replaced, so the backend cannot widen what the route allows. Gatehouse's own error
//! answers (401, 403, 429...) carry `Access-Control-Allow-Origin` for a listed origin in
//! either mode, so a page can read a 401 instead of seeing a network error.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::body::{empty, Body};
use crate::config::{origin_listed, origin_named, CorsAnswer, CorsConfig, RouteConfig};

/// Headers a page may read on gatehouse's own error answers.
const ERROR_EXPOSED: &str = "www-authenticate, retry-after, x-request-id";

/// What `handle` keeps of a request to finish its response's CORS headers.
pub(crate) struct Seen {
    origin: Option<HeaderValue>,
    preflight: bool,
}

impl Seen {
    pub(crate) fn of<B: hyper::body::Body>(request: &Request<B>) -> Self {
        Self {
            origin: request.headers().get(header::ORIGIN).cloned(),
            preflight: is_preflight(request),
        }
    }
}

/// The CORS rules of one place: a route, or the ticket endpoint.
pub(crate) struct Rules<'a> {
    pub(crate) origins: &'a [String],
    pub(crate) mode: &'a CorsConfig,
}

impl<'a> Rules<'a> {
    pub(crate) fn of_route(route: &'a RouteConfig) -> Self {
        Self {
            origins: &route.allowed_origins,
            mode: &route.cors,
        }
    }
}

/// Whether `Origin` names the site the request was sent to (its `Host`, over the scheme the
/// client used: `https` for a TLS listener or a trusted hop's `X-Forwarded-Proto: https`),
/// as a page of the site itself sends it; `null` and every other site are not. The scheme
/// counts: a page served over plain http on the same host (or rewritten by anyone on the
/// path to it) is another origin, and must not speak for the https site's cookie.
pub(crate) fn same_origin(origin: &HeaderValue, host: Option<&HeaderValue>, https: bool) -> bool {
    let (scheme, default_port): (&[u8], &[u8]) = if https {
        (b"https://", b":443")
    } else {
        (b"http://", b":80")
    };
    let authority = origin.as_bytes().strip_prefix(scheme);
    // Browsers leave the scheme's default port out of `Origin`; some clients write it in
    // `Host`.
    let host = host.map(|h| {
        let h = h.as_bytes();
        h.strip_suffix(default_port).unwrap_or(h)
    });
    match (authority, host) {
        (Some(authority), Some(host)) => authority.eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// A browser attaches a cookie to any site's request, so a token read from one speaks for
/// the caller only when the request has no `Origin` (a navigation, a client that is not a
/// browser), comes from the site itself, or from an origin the route names (`"*"` names
/// none): otherwise any page could act as the user (CSRF).
pub(crate) fn cookie_credential_allowed(
    headers: &HeaderMap,
    allowed: &[String],
    https: bool,
) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    same_origin(origin, headers.get(header::HOST), https) || origin_named(allowed, origin)
}

/// A browser's CORS preflight. One with a body is not: it is authenticated like any request.
pub(crate) fn is_preflight<B: hyper::body::Body>(request: &Request<B>) -> bool {
    let h = request.headers();
    request.method() == Method::OPTIONS
        && h.contains_key(header::ORIGIN)
        && h.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        && request.body().is_end_stream()
}

/// Sets the CORS headers of a finished response; `own_error` marks gatehouse's own refusals.
pub(crate) fn finish(
    rules: &Rules<'_>,
    seen: &Seen,
    own_error: bool,
    response: &mut Response<Body>,
) {
    let listed = seen
        .origin
        .as_ref()
        .filter(|o| !rules.origins.is_empty() && origin_listed(rules.origins, o));
    match rules.mode {
        // A preflight answer is complete as built; the upstream's answer is the upstream's.
        CorsConfig::Answer(_) | CorsConfig::Pass if seen.preflight && !own_error => {}
        CorsConfig::Answer(answer) => {
            let h = response.headers_mut();
            remove_cors_headers(h);
            vary_origin(h);
            if let Some(origin) = listed {
                grant(h, answer, origin.clone());
                if own_error {
                    expose_error_headers(h);
                }
            }
        }
        CorsConfig::Pass if own_error => {
            let origin = seen
                .origin
                .as_ref()
                .filter(|o| rules.origins.is_empty() || origin_listed(rules.origins, o));
            if let Some(origin) = origin {
                let h = response.headers_mut();
                remove_cors_headers(h);
                vary_origin(h);
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
                expose_error_headers(h);
            }
        }
        CorsConfig::Pass => {}
    }
}

/// Gatehouse's answer to a preflight from `origin` (already checked against the list).
pub(crate) fn answer_preflight(answer: &CorsAnswer, origin: HeaderValue) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let h = response.headers_mut();
    grant(h, answer, origin);
    if let Some(v) = joined(answer.methods.iter().map(Method::as_str)) {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    if let Some(v) = joined(answer.headers.iter().map(HeaderName::as_str)) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(answer.max_age.as_secs()),
    );
    h.insert(
        header::VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    response
}

fn grant(h: &mut HeaderMap, answer: &CorsAnswer, origin: HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    if answer.credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let Some(v) = joined(answer.expose.iter().map(HeaderName::as_str)) {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
}

fn expose_error_headers(h: &mut HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(ERROR_EXPOSED),
    );
}

fn joined<'a>(items: impl Iterator<Item = &'a str>) -> Option<HeaderValue> {
    let text = items.collect::<Vec<_>>().join(", ");
    (!text.is_empty())
        .then(|| HeaderValue::from_str(&text).ok())
        .flatten()
}

/// Every `Access-Control-*` response header: on an answer-mode route they are gatehouse's.
fn remove_cors_headers(h: &mut HeaderMap) {
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|n| n.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in names {
        h.remove(name);
    }
}

/// Adds `Origin` to `Vary` unless it is there already: the answer depends on it.
fn vary_origin(h: &mut HeaderMap) {
    let present = h
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| matches!(v.trim(), "*") || v.trim().eq_ignore_ascii_case("origin"));
    if !present {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn answer() -> CorsAnswer {
        CorsAnswer {
            methods: vec![Method::GET, Method::POST],
            headers: vec![HeaderName::from_static("authorization")],
            expose: vec![HeaderName::from_static("x-total")],
            credentials: true,
            max_age: Duration::from_secs(600),
        }
    }

    fn request(method: Method, headers: &[(&str, &str)], body: &'static str) -> Request<String> {
        let mut r = Request::builder().method(method).uri("/hub/negotiate");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(body.to_string()).unwrap()
    }

    #[test]
    fn only_a_bodiless_options_with_origin_and_request_method_is_a_preflight() {
        let full = [
            ("origin", "https://app.test"),
            ("access-control-request-method", "POST"),
        ];
        assert!(is_preflight(&request(Method::OPTIONS, &full, "")));
        assert!(!is_preflight(&request(Method::OPTIONS, &full, "x")));
        assert!(!is_preflight(&request(Method::POST, &full, "")));
        assert!(!is_preflight(&request(Method::OPTIONS, &full[..1], "")));
        assert!(!is_preflight(&request(Method::OPTIONS, &full[1..], "")));
    }

    fn finished(mode: &CorsConfig, origin: &str, preflight: bool, own_error: bool) -> HeaderMap {
        let origins = vec!["https://app.test".to_string()];
        let rules = Rules {
            origins: &origins,
            mode,
        };
        let seen = Seen {
            origin: Some(HeaderValue::from_str(origin).unwrap()),
            preflight,
        };
        let mut response = Response::new(empty());
        let h = response.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        finish(&rules, &seen, own_error, &mut response);
        response.headers().clone()
    }

    #[test]
    fn answer_mode_owns_the_cors_headers_of_every_response() {
        let mode = CorsConfig::Answer(answer());
        let h = finished(&mode, "https://app.test", false, false);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.test");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[header::ACCESS_CONTROL_EXPOSE_HEADERS], "x-total");
        let vary: Vec<_> = h.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);
        // Another origin: the upstream's wildcard is gone and nothing is granted.
        let h = finished(&mode, "https://app.test.evil.test", false, false);
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        // gatehouse's own 401 is readable, with WWW-Authenticate exposed.
        let h = finished(&mode, "https://app.test", false, true);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.test");
        assert_eq!(h[header::ACCESS_CONTROL_EXPOSE_HEADERS], ERROR_EXPOSED);
    }

    #[test]
    fn pass_mode_leaves_upstream_answers_and_marks_only_its_own_errors() {
        let h = finished(&CorsConfig::Pass, "https://app.test", false, false);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let h = finished(&CorsConfig::Pass, "https://app.test", true, false);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let h = finished(&CorsConfig::Pass, "https://app.test", false, true);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.test");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        let h = finished(&CorsConfig::Pass, "https://other.test", false, true);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }

    #[test]
    fn a_preflight_answer_names_everything_the_browser_checks() {
        let r = answer_preflight(&answer(), HeaderValue::from_static("https://app.test"));
        let h = r.headers();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.test");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_HEADERS], "authorization");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "600");
    }

    #[test]
    fn the_own_site_is_the_host_over_the_clients_scheme_default_port_or_not() {
        let same = |origin: &'static str, host: &'static str, https: bool| {
            let host = HeaderValue::from_static(host);
            same_origin(&HeaderValue::from_static(origin), Some(&host), https)
        };
        assert!(same("https://app.test", "app.test", true));
        assert!(same("https://app.test", "app.test:443", true));
        assert!(same("http://app.test", "app.test:80", false));
        assert!(same("https://app.test:8443", "app.test:8443", true));
        assert!(!same("http://app.test", "app.test", true));
        assert!(!same("https://app.test", "app.test", false));
        assert!(!same("https://app.test", "app.test:80", true));
        assert!(!same("https://app.test", "app.test:4430", true));
        assert!(!same("null", "app.test", true));
    }
}
