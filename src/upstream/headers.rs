//! Header rules for the upstream leg: hop-by-hop removal (RFC 9110 §7.6.1), the client
//! headers that never pass in any spelling, and request ids. The forwarding headers
//! gatehouse sets itself are in [`super::forwarded`].
//!
//! Backends behind CGI, WSGI and Rack read `X_Auth_Subject` as `X-Auth-Subject` (both
//! become `HTTP_X_AUTH_SUBJECT`), so every comparison here folds ASCII case and `_`/`-`.

use std::borrow::Cow;
use std::sync::LazyLock;

use http::header::{self, GetAll, HeaderName};

use super::forwarded::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use http::{HeaderMap, HeaderValue};

use crate::claim_path::ClaimPath;
use crate::proxy::trace_context::{BAGGAGE, TRACESTATE};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Connection-specific fields that never cross a proxy, whatever `Connection` says.
fn hop_by_hop() -> [&'static HeaderName; 8] {
    [
        &header::CONNECTION,
        &PROXY_CONNECTION,
        &KEEP_ALIVE,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHORIZATION,
    ]
}

/// Fields the proxy sets or rewrites itself, besides the hop-by-hop set.
fn managed() -> [&'static HeaderName; 11] {
    [
        &header::HOST,
        &header::AUTHORIZATION,
        &header::CONTENT_LENGTH,
        &header::COOKIE,
        &X_FORWARDED_FOR,
        &X_FORWARDED_PROTO,
        &X_FORWARDED_HOST,
        &X_REQUEST_ID,
        &header::SEC_WEBSOCKET_KEY,
        &header::SEC_WEBSOCKET_PROTOCOL,
        &header::SEC_WEBSOCKET_VERSION,
    ]
}

/// Client headers that tell an upstream where a request came from or what it really asked
/// for (frameworks route, authorize or log on them). Gatehouse sets the ones it knows and
/// drops the rest; besides these, every `X-Forwarded-*` name goes.
const FORWARDING: &[&str] = &[
    "forwarded",
    "x-forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    // Rails' `remote_ip` reads it; Cloudflare, Fastly and ingress-nginx set the next three.
    "client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
    // ASP.NET Core's forwarded-headers middleware keeps the values it replaced in these.
    "x-original-for",
    "x-original-proto",
    "x-original-url",
    "x-rewrite-url",
    // nginx's `auth_request` convention and Envoy's path before its rewrite: an upstream
    // that authorizes a subrequest reads the original target from them.
    "x-original-uri",
    "x-original-method",
    "x-envoy-original-path",
    "x-original-host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    // The mount point a WSGI server cuts off the path: gunicorn reads a `SCRIPT_NAME` field
    // by default, and a common Flask/Django snippet `X-Script-Name`, so `/public/admin`
    // with `SCRIPT_NAME: /public` runs `/admin`.
    "script-name",
    "x-script-name",
    // Not where the request came from, but as dangerous from a client: CGI puts `Proxy` in
    // `HTTP_PROXY`, which HTTP clients take as their proxy (httpoxy), and Next.js skips its
    // middleware for a request that calls itself its subrequest (CVE-2025-29927).
    "proxy",
    "x-middleware-subrequest",
    // The client's address or scheme as other platforms' front ends pass it: WebLogic and
    // its imitators, Azure Front Door, Netlify, Vercel, IIS's ARR, Envoy and Rack's
    // `X-Scheme`.
    "proxy-client-ip",
    "wl-proxy-client-ip",
    "x-proxyuser-ip",
    "x-azure-clientip",
    "x-azure-socketip",
    "x-nf-client-connection-ip",
    "x-vercel-forwarded-for",
    "x-arr-ssl",
    "x-envoy-external-address",
    "x-envoy-internal",
    "x-scheme",
    "x-https",
    "x-proxied-https",
    "fastly-ssl",
    "forwarded-for",
    "x-remote-addr",
    "x-remote-ip",
    "x-originating-ip",
    "x-original-remote-addr",
    "incap-client-ip",
    "x-sucuri-clientip",
    "ali-cdn-real-ip",
];

/// Every `X-Forwarded-*` name is a forwarding header.
const X_FORWARDED_PREFIX: &str = "x-forwarded-";

/// Client headers in which a TLS terminator or an authenticating proxy tells its backend
/// who the caller is: the client certificate, and the user of oauth2-proxy, Kubernetes'
/// front proxy, Grafana's auth proxy, AWS ALB, Google IAP, Azure App Service, Kong, Google
/// Cloud Endpoints and API Gateway, WSO2, OpenSearch's proxy authentication (and its
/// `x-proxy-ext-*` attributes, by prefix below) and Posit Workbench (the families by prefix
/// below). A backend
/// moved behind gatehouse may still believe them, and no client sends them honestly, so
/// they never pass. Unlike the forwarding names, an operator may have gatehouse set one
/// as an identity header (`[identity]`), for a backend that already reads it.
const ASSERTED: &[&str] = &[
    "x-arr-clientcert",
    "x-client-cert",
    "x-client-verify",
    "x-client-dn",
    "x-ssl-cert",
    "x-ssl-client-cert",
    "x-ssl-client-verify",
    "x-ssl-client-dn",
    "x-ssl-client-s-dn",
    "ssl-client-cert",
    "x-remote-user",
    "x-remote-group",
    "x-goog-authenticated-user-email",
    "x-goog-authenticated-user-id",
    "x-goog-iap-jwt-assertion",
    "x-ms-client-principal",
    "x-ms-client-principal-id",
    "x-ms-client-principal-name",
    "x-ms-client-principal-idp",
    "x-userinfo",
    "x-anonymous-consumer",
    "x-credential-identifier",
    "x-credential-username",
    "x-endpoint-api-userinfo",
    "x-apigateway-api-userinfo",
    "x-jwt-assertion",
    "ct-remote-user",
    "eppn",
    "x-amzn-request-context",
    "x-apigateway-event",
    "x-apigateway-context",
    "x-cloudscheduler",
    "proxy-auth-cert",
    "proxy-ssl-id",
    "x-proxy-user",
    "x-proxy-roles",
    "x-rstudio-username",
    // IIS and Rack take these as "the client used https".
    "front-end-https",
    "x-url-scheme",
];

/// Families of [`ASSERTED`] names, by prefix. gatehouse asks no client for a certificate,
/// so every client-certificate header is made up: RFC 9440's `Client-Cert` and
/// `Client-Cert-Chain`, Apache's `SSL_CLIENT_*` (as CGI names them), nginx's and HAProxy's
/// customary `X-SSL-*`, and the `X-Client-Cert*` and `X-TLS-Client-*` spellings. The
/// users' families: gatehouse's own `X-Auth-*` (the identity headers' customary names, so
/// a backend may read one the config does not set), Authelia's `Remote-*`, Grafana's and
/// Gitea's `X-WebAuth-*`, Shibboleth's `Shib-*` (and `eppn`), mod_auth_cas's `CAS-*`, Authentik, Pomerium, Kong's consumer and
/// `X-Authenticated-*`, mod_auth_openidc's `OIDC_*`, Vouch, the web-SSO agents (SiteMinder's
/// `SM_*`, WebSEAL's `iv-*`, Oracle Access Manager's `OAM_*`), Tailscale, Teleport and
/// ngrok's `ngrok-auth-*`. And whole platforms whose front end sets every such field
/// itself and drops the client's: Cloudflare (`CF-*`), CloudFront, App Engine, Fly,
/// WebSphere's private `$WS*`, WebLogic's `WL-Proxy-*`, and Envoy's `x-envoy-*` (a sidecar
/// behind gatehouse takes them as internal: `x-envoy-original-dst-host` picks where it
/// connects).
const ASSERTED_PREFIXES: &[&str] = &[
    "x-auth-",
    "remote-",
    "x-authentik-",
    "x-pomerium-",
    "x-consumer-",
    "x-authenticated-",
    "oidc-",
    "x-vouch-",
    "x-webauth-",
    "shib-",
    "cas-",
    "sm-",
    "iv-",
    "oam-",
    "tailscale-",
    "teleport-",
    "cf-",
    "cloudfront-",
    "x-appengine-",
    "fly-",
    "$ws",
    "wl-proxy-",
    "x-envoy-",
    "ngrok-auth-",
    "x-proxy-ext-",
    "x-remote-extra-",
    "x-amzn-oidc-",
    "x-amzn-mtls-",
    "x-ms-token-",
    "x-ssl-",
    "x-client-cert",
    "x-tls-client-",
    "ssl-client-",
    "client-cert",
];

/// Other tracers' propagation fields: B3 (Zipkin), Jaeger, OpenTracing, Datadog, AWS X-Ray,
/// Google Cloud, Sentry, Elastic APM, Envoy's LightStep, gRPC's binary context, .NET's
/// `Request-Id` / `Correlation-Context`, Instana, SkyWalking (6 and 8), New Relic,
/// Dynatrace, AppDynamics, Honeycomb, Pinpoint, Envoy's `x-client-trace-id`, W3C's
/// `traceresponse` and Spring Cloud Sleuth's `baggage-*`. gatehouse writes W3C trace context
/// itself (`proxy::trace_context`); these it cannot check, and a backend that reads one
/// lets the caller choose its trace ids or hand it baggage. They pass only from a hop the
/// operator trusts with trace context.
const TRACE: &[&str] = &[
    "b3",
    "uber-trace-id",
    "jaeger-baggage",
    "jaeger-debug-id",
    "sw8",
    "sw8-x",
    "sw8-correlation",
    "newrelic",
    "singularityheader",
    "grpc-tags-bin",
    "x-ot-span-context",
    "x-amzn-trace-id",
    "x-cloud-trace-context",
    "sentry-trace",
    "elastic-apm-traceparent",
    "grpc-trace-bin",
    "request-id",
    "correlation-context",
    "x-honeycomb-trace",
    "x-client-trace-id",
    "sw6",
    "sw3",
    "traceresponse",
];

/// Families of [`TRACE`] names, by prefix.
const TRACE_PREFIXES: &[&str] = &[
    "x-b3-",
    "uberctx-",
    "ot-baggage-",
    "ot-tracer-",
    "x-datadog-",
    "x-instana-",
    "x-dynatrace",
    "x-newrelic-",
    "baggage-",
    "pinpoint-",
];

/// Two header names a CGI-style backend cannot tell apart: equal once ASCII case and
/// `_`/`-` are folded.
pub fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// Whether `name` begins with `prefix`, folded as [`same_name`] folds.
fn has_prefix(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|head| same_name(head, prefix))
}

fn is_forwarding(name: &str) -> bool {
    FORWARDING.iter().any(|f| same_name(f, name)) || has_prefix(name, X_FORWARDED_PREFIX)
}

/// The hop-by-hop names and those the proxy sets or rewrites, lowercase: an operator's
/// `strip_headers` rule may not cover one.
pub fn reserved_names() -> impl Iterator<Item = &'static str> {
    hop_by_hop()
        .into_iter()
        .chain(managed())
        .map(HeaderName::as_str)
}

/// Headers the proxy manages itself; an identity header may not be one of them.
pub fn is_reserved(name: &HeaderName) -> bool {
    hop_by_hop().contains(&name) || managed().contains(&name) || is_forwarding(name.as_str())
}

/// When a listed client field is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// In any spelling.
    Always,
    /// A name the proxy manages: its `-` spelling is handled where it is managed, so only
    /// a spelling with `_` is dropped here.
    Underscored,
    /// Another tracer's field: unless the hop is trusted with trace context.
    Trace,
}

/// The fixed names [`is_spoofed`] looks for, by length, each with its [`Kind`]. Every
/// client field is looked up here, a dozen per browser request, so a name meets only the
/// few of its own length, not all hundred.
static SPOOFED_BY_LENGTH: LazyLock<Vec<Vec<(&'static str, Kind)>>> = LazyLock::new(|| {
    let always = FORWARDING
        .iter()
        .chain(ASSERTED)
        .map(|n| (*n, Kind::Always));
    let underscored = hop_by_hop()
        .into_iter()
        .chain(managed())
        .map(|n| (n.as_str(), Kind::Underscored));
    let trace = TRACE.iter().map(|n| (*n, Kind::Trace));
    let mut by_length: Vec<Vec<(&str, Kind)>> = Vec::new();
    for (name, kind) in always.chain(underscored).chain(trace) {
        if by_length.len() <= name.len() {
            by_length.resize_with(name.len() + 1, Vec::new);
        }
        by_length[name.len()].push((name, kind));
    }
    by_length
});

/// Every prefix [`is_spoofed`] looks for, with its [`Kind`].
fn prefixes() -> impl Iterator<Item = (&'static str, Kind)> {
    std::iter::once((X_FORWARDED_PREFIX, Kind::Always))
        .chain(ASSERTED_PREFIXES.iter().map(|p| (*p, Kind::Always)))
        .chain(TRACE_PREFIXES.iter().map(|p| (*p, Kind::Trace)))
}

/// The prefixes by their first letter: a name is compared only with those that begin as
/// it does, since a browser sends several `Sec-*` and `Content-*` fields and a prefix is
/// folded byte by byte.
static PREFIXES_BY_LETTER: LazyLock<Vec<Vec<(&'static str, Kind)>>> = LazyLock::new(|| {
    let mut by_letter: Vec<Vec<(&str, Kind)>> = vec![Vec::new(); 256];
    for (prefix, kind) in prefixes() {
        if let Some(&b) = prefix.as_bytes().first() {
            by_letter[usize::from(b)].push((prefix, kind));
        }
    }
    by_letter
});

/// Whether a listed name of this kind is dropped; `underscored`: the client spelled it
/// with `_`.
fn drops(kind: Kind, underscored: bool, trace_trusted: bool) -> bool {
    match kind {
        Kind::Always => true,
        Kind::Underscored => underscored,
        Kind::Trace => !trace_trusted,
    }
}

/// A client header that must not reach the upstream in any spelling: an identity header,
/// a forwarding or asserted header, an `_` spelling of a header the proxy manages, (from a
/// hop not trusted with trace context) another tracer's field, or any name with a byte
/// other than a letter, a digit, `-` or `_`.
///
/// A `HeaderName` is lowercase, and so is every listed name, so folding is only `_` to
/// `-`: done once on the name (nearly none has a `_`), after which every comparison is
/// plain equality. Folding both sides byte by byte for each candidate cost a quarter of
/// the request rewrite.
fn is_spoofed(
    name: &HeaderName,
    identity: &[(HeaderName, ClaimPath)],
    trace_trusted: bool,
) -> bool {
    let name = name.as_str().as_bytes();
    // A name with anything but letters, digits, `-` and `_` goes whatever it says: PHP
    // and CGI gateways read `.` (and other such bytes) as `_`, so `Remote.User` is their
    // `REMOTE_USER`, and nginx ignores such names by default. A name is a dozen bytes:
    // one plain pass, which also finds the `_` to fold.
    let mut underscored = false;
    for &b in name {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => {}
            b'_' => underscored = true,
            _ => return true,
        }
    }
    let folded: Cow<'_, [u8]> = match underscored {
        false => Cow::Borrowed(name),
        true => Cow::Owned(name.iter().map(|&b| fold(b)).collect()),
    };
    let folded = &*folded;
    // No listed name begins with `_`: a different first byte rules a candidate out.
    let Some(&first) = folded.first() else {
        return false;
    };
    let fixed = SPOOFED_BY_LENGTH.get(folded.len()).is_some_and(|names| {
        names.iter().any(|(candidate, kind)| {
            candidate.as_bytes().first() == Some(&first)
                && candidate.as_bytes() == folded
                && drops(*kind, underscored, trace_trusted)
        })
    });
    let prefixed = || {
        PREFIXES_BY_LETTER[usize::from(first)]
            .iter()
            .any(|(prefix, kind)| {
                folded.starts_with(prefix.as_bytes()) && drops(*kind, underscored, trace_trusted)
            })
    };
    let identity_name = || {
        identity.iter().any(|(n, _)| {
            let n = n.as_str().as_bytes();
            n.len() == folded.len() && n.iter().zip(folded).all(|(&a, &b)| fold(a) == b)
        })
    };
    fixed || prefixed() || identity_name()
}

/// A byte as [`same_name`] compares it.
pub(crate) fn fold(c: u8) -> u8 {
    match c {
        b'_' => b'-',
        c => c.to_ascii_lowercase(),
    }
}

/// A field `Connection` may not take away, whatever the client says is hop-by-hop.
fn is_protected(name: &HeaderName, identity: &[(HeaderName, ClaimPath)]) -> bool {
    managed().contains(&name) || is_spoofed(name, identity, true)
}

/// What [`strip_client`] saw of the fields the rewrite handles next, so that it asks the
/// map only for those that are there.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    pub transfer_encoding: bool,
    pub authorization: bool,
    pub cookie: bool,
    pub websocket_protocol: bool,
    pub referer: bool,
    /// W3C trace fields, which the trace context replaces or removes after the rewrite.
    pub tracestate: bool,
    pub baggage: bool,
}

/// Removes from a client request the hop-by-hop fields (a protected field named in
/// `Connection` stays, so a client cannot have the proxy drop a header it vouches for) and
/// every one [`is_spoofed`] names; the proxy sets its own afterwards. `trace_trusted`: the
/// hop may hand on other tracers' fields.
pub fn strip_client(
    headers: &mut HeaderMap,
    identity: &[(HeaderName, ClaimPath)],
    trace_trusted: bool,
) -> Seen {
    strip(
        headers,
        |name| {
            let spoofed = is_spoofed(name, identity, trace_trusted);
            if spoofed {
                tracing::debug!(header = %name, "removed a client-supplied identity or forwarding header");
            }
            spoofed
        },
        |name| !is_protected(name, identity),
    )
}

/// Removes the fixed hop-by-hop set and every field that `Connection` names (responses).
/// A `Content-Length` next to `Transfer-Encoding` goes too (RFC 9112 §6.3: the coding
/// framed the body, and a sender must remove the length before forwarding): the client
/// would otherwise be told a length the body we pass on does not have.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if strip(headers, |_| false, |_| true).transfer_encoding {
        headers.remove(header::CONTENT_LENGTH);
    }
}

/// Removes the fixed hop-by-hop set, the fields `also` picks, and the ones `Connection`
/// names that `may_list` allows, in one pass over the fields the message has: most names
/// a proxy must remove are absent, and asking the map for each one would hash it.
fn strip(
    headers: &mut HeaderMap,
    also: impl Fn(&HeaderName) -> bool,
    may_list: impl Fn(&HeaderName) -> bool,
) -> Seen {
    let mut seen = Seen::default();
    let mut connection = false;
    // Besides `Connection`, which nearly every response has, there is rarely anything to
    // remove, and then this allocates nothing.
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if *name == header::CONNECTION {
            connection = true;
            continue;
        }
        seen.transfer_encoding |= *name == header::TRANSFER_ENCODING;
        seen.authorization |= *name == header::AUTHORIZATION;
        seen.cookie |= *name == header::COOKIE;
        seen.websocket_protocol |= *name == header::SEC_WEBSOCKET_PROTOCOL;
        seen.referer |= *name == header::REFERER;
        seen.tracestate |= *name == TRACESTATE;
        seen.baggage |= *name == BAGGAGE;
        if hop_by_hop().contains(&name) || also(name) {
            doomed.push(name.clone());
        }
    }
    if connection {
        let listing = headers.get_all(header::CONNECTION);
        if let Some(listing) = naming_more(&listing) {
            let named = headers
                .keys()
                .filter(|n| listed(listing, n) && may_list(n))
                .cloned();
            doomed.extend(named);
        }
        headers.remove(header::CONNECTION);
    }
    for name in doomed {
        headers.remove(name);
    }
    seen
}

/// Whether any token of the `Connection` fields, trimmed, passes `test`. Nested loops, not
/// a flattened iterator: every response has a `Connection`, and the adapter chain cost
/// several times the comparisons.
fn any_token(connection: &GetAll<'_, HeaderValue>, test: impl Fn(&[u8]) -> bool) -> bool {
    connection.iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|t| test(t.trim_ascii()))
    })
}

/// The `Connection` fields, when they name a field beyond the fixed hop-by-hop set: they
/// rarely do (`keep-alive`, `close`, `upgrade`), and then no field is looked for in them.
fn naming_more<'a, 'm>(
    connection: &'a GetAll<'m, HeaderValue>,
) -> Option<&'a GetAll<'m, HeaderValue>> {
    // The common tokens first.
    let fixed = |t: &[u8]| {
        t.is_empty()
            || t.eq_ignore_ascii_case(b"keep-alive")
            || t.eq_ignore_ascii_case(b"close")
            || hop_by_hop()
                .iter()
                .any(|h| t.eq_ignore_ascii_case(h.as_str().as_bytes()))
    };
    any_token(connection, |t| !fixed(t)).then_some(connection)
}

/// Whether `Connection` lists `name`: its tokens are compared where they lie, ignoring
/// case (made into `HeaderName`s they cost an allocation each on every response).
fn listed(connection: &GetAll<'_, HeaderValue>, name: &HeaderName) -> bool {
    any_token(connection, |t| {
        t.eq_ignore_ascii_case(name.as_str().as_bytes())
    })
}

/// The client's `X-Request-Id` when it is a sane id (up to 128 of `[A-Za-z0-9._-]`), else a new one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    request_id_or(headers, uuid::Uuid::new_v4)
}

/// As [`request_id`], a new id being `fresh()`'s UUID (the proxy draws a request's random
/// bytes at once).
pub(crate) fn request_id_or(
    headers: &HeaderMap,
    fresh: impl FnOnce() -> uuid::Uuid,
) -> HeaderValue {
    headers
        .get(&X_REQUEST_ID)
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty()
                && b.len() <= 128
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
        })
        .cloned()
        .unwrap_or_else(|| {
            // Encoded on the stack: `to_string` goes through `Display` and grows a String.
            let mut text = uuid::Uuid::encode_buffer();
            let text = fresh().hyphenated().encode_lower(&mut text);
            HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Vec<(HeaderName, ClaimPath)> {
        vec![(
            HeaderName::from_static("x-auth-subject"),
            ClaimPath::top("sub"),
        )]
    }

    fn map(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in fields {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    /// `is_spoofed` folds only the client's name and compares the lists' names as they
    /// are: each must be a `HeaderName`'s spelling, lowercase and with `-`, not `_`.
    #[test]
    fn listed_names_are_in_folded_form() {
        let names = FORWARDING
            .iter()
            .chain(ASSERTED)
            .chain(TRACE)
            .chain(ASSERTED_PREFIXES)
            .chain(TRACE_PREFIXES)
            .copied()
            .chain(
                hop_by_hop()
                    .into_iter()
                    .chain(managed())
                    .map(HeaderName::as_str),
            );
        for name in names {
            let folded: String = name.bytes().map(|b| char::from(fold(b))).collect();
            assert_eq!(folded, name);
        }
    }

    /// An identity header configured with `_` still goes in every spelling.
    #[test]
    fn an_identity_name_with_an_underscore_goes_in_every_spelling() {
        let identity = vec![(HeaderName::from_static("x_user"), ClaimPath::top("sub"))];
        let mut h = map(&[
            ("x-user", "a"),
            ("x_user", "b"),
            ("X_USER", "c"),
            ("x-users", "d"),
        ]);
        strip_client(&mut h, &identity, false);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-users"]);
    }

    #[test]
    fn names_fold_case_and_underscores() {
        assert!(same_name("X_Auth_Subject", "x-auth-subject"));
        assert!(same_name("x-auth_SUBJECT", "X_AUTH-subject"));
        assert!(!same_name("x-auth-subjects", "x-auth-subject"));
        assert!(!same_name("x.auth.subject", "x-auth-subject"));
    }

    #[test]
    fn hop_by_hop_and_connection_named_fields_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "close,\tX-OTHER-hop ,"),
            ("x-secret-hop", "1"),
            ("x-other-hop", "1"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("x-keep", "1"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
        let mut framed = map(&[("transfer-encoding", "chunked"), ("content-length", "3")]);
        remove_hop_by_hop(&mut framed);
        assert!(framed.is_empty());
        let mut sized = map(&[("content-length", "3")]);
        remove_hop_by_hop(&mut sized);
        assert_eq!(sized.len(), 1);

        // Only the fixed set named: nothing else goes.
        let mut h = map(&[("connection", "Keep-Alive, close"), ("x-keep", "1")]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-keep"]);
    }

    #[test]
    fn connection_cannot_name_a_protected_field() {
        let fields = [
            "x-auth-subject",
            "x-forwarded-for",
            "forwarded",
            "x-request-id",
            "authorization",
            "host",
            "cookie",
            "x-other",
        ];
        let mut h = map(&[("connection", &fields.join(", "))]);
        for name in fields {
            h.insert(HeaderName::from_static(name), HeaderValue::from_static("1"));
        }
        let seen = strip_client(&mut h, &identity(), false);
        assert!(seen.authorization && seen.cookie && !seen.websocket_protocol);
        // The managed fields stay for the rewrite to handle; the identity and forwarding
        // ones go anyway, as spoofed.
        for name in ["authorization", "host", "cookie", "x-request-id"] {
            assert!(h.contains_key(name), "{name} was dropped");
        }
        assert_eq!(h.len(), 4);
    }

    #[test]
    fn identity_and_forwarding_headers_go_in_every_spelling() {
        let spoofed = [
            "x_auth_subject",
            "X-AUTH_subject",
            "forwarded",
            "x-real-ip",
            "x_real_ip",
            "x-original-url",
            "x-rewrite-url",
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x-forwarded-server",
            "x_forwarded_for",
            "x-forwarded-anything",
            "x_request_id",
            "transfer_encoding",
            "sec_websocket_protocol",
            "client_ip",
            "cf-connecting-ip",
            "x-arr-clientcert",
            "x_ssl_client_cert",
            "remote_user",
            "x-auth-request-user",
            "x_auth_request_email",
            "x-amzn-oidc-identity",
            "x-ms-client-principal-name",
            "x_goog_authenticated_user_email",
        ];
        let mut h = map(&spoofed.map(|n| (n, "evil")));
        h.insert("x-keep", HeaderValue::from_static("1"));
        h.insert("x-keep_me", HeaderValue::from_static("1"));
        strip_client(&mut h, &identity(), false);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-keep", "x-keep_me"]);
    }

    /// Pass 13: what Authelia, Authentik, Pomerium, Cloudflare Access, Kong, Google's
    /// gateways, mod_auth_openidc and Vouch vouch with, and other platforms' client address
    /// and scheme fields. A backend moved from one of them may read them next to the
    /// identity gatehouse verified.
    #[test]
    fn other_platforms_identity_and_address_headers_go() {
        let spoofed = [
            "Remote-Groups",
            "Remote_Email",
            "remote-name",
            "X-authentik-username",
            "X-Pomerium-Jwt-Assertion",
            "X-Pomerium-Claim-Email",
            "Cf-Access-Jwt-Assertion",
            "Cf-Access-Authenticated-User-Email",
            "Cf-Visitor",
            "X-Consumer-Username",
            "X-Authenticated-Userid",
            "X-Authenticated-Scope",
            "X-Userinfo",
            "X-Anonymous-Consumer",
            "X-Credential-Identifier",
            "X-Endpoint-API-UserInfo",
            "X-Apigateway-Api-Userinfo",
            "OIDC_CLAIM_groups",
            "OIDC_access_token",
            "X-Vouch-User",
            "X-JWT-Assertion",
            "X-Scheme",
            "Proxy-Client-IP",
            "WL-Proxy-Client-IP",
            "X-ProxyUser-Ip",
            "X-Azure-ClientIP",
            "X-Azure-SocketIP",
            "X-Nf-Client-Connection-Ip",
            "X-Vercel-Forwarded-For",
            "X-ARR-SSL",
            "X-Envoy-External-Address",
            "X-Envoy-Internal",
        ];
        let kept = ["cfaccess", "oidc", "remotely", "x-authenticate", "x-envoyx"];
        assert_eq!(left_of(&[&spoofed[..], &kept].concat(), false), kept);
    }

    /// Pass 17: web-SSO agents, Java application servers and more platforms (Spring
    /// Security reads SiteMinder's `SM_USER` by default).
    #[test]
    fn sso_agents_and_application_servers_headers_go() {
        let spoofed = [
            "SM_USER",
            "SM_UNIVERSALID",
            "iv-user",
            "iv-groups",
            "iv-creds",
            "OAM_REMOTE_USER",
            "CT_REMOTE_USER",
            "Tailscale-User-Login",
            "Teleport-Jwt-Assertion",
            "X-Appengine-User-Email",
            "X-AppEngine-QueueName",
            "X-CloudScheduler",
            "x-amzn-request-context",
            "x-apigateway-event",
            "x-apigateway-context",
            "$WSRU",
            "$WSCC",
            "$WSRA",
            "WL-Proxy-Client-Cert",
            "WL-Proxy-SSL",
            "Proxy-auth-cert",
            "Proxy-ssl-id",
            "X-Proxied-Https",
            "X-Https",
            "Fastly-SSL",
            "CloudFront-Viewer-Address",
            "CloudFront-Forwarded-Proto",
            "Fly-Client-IP",
            "Cf-Pseudo-IPv4",
            "CF-Connecting-IPv6",
            "Forwarded-For",
            "Incap-Client-IP",
            "X-Sucuri-ClientIP",
            "Ali-Cdn-Real-Ip",
            "X-Remote-Addr",
            "X-Remote-IP",
            "X-Originating-IP",
            "X-Original-Remote-Addr",
            // Pass 18: gatehouse's own family, and more SSO agents.
            "X-Auth-Roles",
            "X_Auth_Groups",
            "X-Auth-Email",
            "X-WEBAUTH-ROLE",
            "X-WebAuth-Groups",
            "Shib-Identity-Provider",
            "Shib-AuthnContext-Class",
            "eppn",
            "CAS-User",
            "CAS-memberOf",
            // Pass 19: OpenSearch's proxy authentication, Posit Workbench, ngrok, Envoy.
            "X-Proxy-User",
            "x_proxy_roles",
            "X-RStudio-Username",
            "ngrok-auth-user-email",
            "ngrok-auth-user-id",
            "x-envoy-original-dst-host",
            "x-envoy-retry-on",
            "x-envoy-upstream-rq-timeout-ms",
            // Pass 20.
            "x-proxy-ext-tenant",
            "SCRIPT_NAME",
            "X-Script-Name",
            "Proxy",
            "x-middleware-subrequest",
        ];
        let kept = [
            "accept",
            "cash",
            "cfg",
            "fly",
            "ivy",
            "ngrok-skip-browser-warning",
            "pinpoint",
            "smart",
            "x-authorization-hint",
            "x-proxy-id",
        ];
        assert_eq!(left_of(&[&spoofed[..], &kept].concat(), true), kept);
    }

    /// Pass 17: other tracers' fields carry trace ids and baggage the caller chose; they
    /// pass only from a hop trusted with trace context.
    #[test]
    fn other_tracers_fields_pass_only_from_a_trusted_hop() {
        let fields = [
            "b3",
            "X-B3-TraceId",
            "X-B3-Sampled",
            "uber-trace-id",
            "uberctx-tenant",
            "jaeger-baggage",
            "ot-baggage-user",
            "ot-tracer-traceid",
            "x-datadog-trace-id",
            "X-Amzn-Trace-Id",
            "X-Cloud-Trace-Context",
            "sentry-trace",
            "elastic-apm-traceparent",
            "x-ot-span-context",
            "grpc-trace-bin",
            "Request-Id",
            "Correlation-Context",
            // Pass 18.
            "X-INSTANA-T",
            "X-INSTANA-L",
            "sw8",
            "sw8-x",
            "sw8-correlation",
            "newrelic",
            "X-NewRelic-ID",
            "x-dynatrace",
            "singularityheader",
            "jaeger-debug-id",
            "grpc-tags-bin",
            "baggage-tenant",
            "baggage_user",
            // Pass 19.
            "X-Honeycomb-Trace",
            "x-client-trace-id",
            "sw6",
            "sw3",
            "Pinpoint-TraceID",
            "Pinpoint-pSpanID",
            "traceresponse",
        ];
        let request = [&fields[..], &["x-keep"]].concat();
        assert_eq!(left_of(&request, false), ["x-keep"]);
        assert_eq!(left_of(&request, true).len(), fields.len() + 1);
    }

    /// Pass 20: PHP (behind Caddy's FastCGI, say) reads `Remote.User` as `REMOTE_USER`, and
    /// a `.` spelling of gatehouse's own identity header reached it next to the real one.
    #[test]
    fn names_with_bytes_a_gateway_would_fold_go() {
        let odd = [
            "Remote.User",
            "X.Auth.Subject",
            "x.forwarded.for",
            "X.Internal.Role",
            "SM.USER",
            "x+auth+roles",
            "x!auth",
            "x~y",
            "a.b",
            "x'quoted",
        ];
        let kept = ["accept", "x-custom-1", "x_custom_2"];
        assert_eq!(left_of(&[&odd[..], &kept].concat(), false), kept);
    }

    /// The names `strip_client` leaves of a request with one field of each name, sorted.
    fn left_of(names: &[&str], trace_trusted: bool) -> Vec<String> {
        let mut h = HeaderMap::new();
        for name in names {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("a valid name");
            h.append(name, HeaderValue::from_static("1"));
        }
        strip_client(&mut h, &identity(), trace_trusted);
        let mut left: Vec<String> = h.keys().map(|n| n.as_str().to_string()).collect();
        left.sort_unstable();
        left
    }

    #[test]
    fn reserved_names_cannot_be_identity_headers() {
        for name in ["host", "x-forwarded-port", "forwarded", "x-real-ip", "te"] {
            assert!(is_reserved(&HeaderName::from_static(name)), "{name}");
        }
        assert!(!is_reserved(&HeaderName::from_static("x-auth-subject")));
    }

    /// An operator whose backend already reads, say, oauth2-proxy's header may have
    /// gatehouse set it: the client's spellings go, and gatehouse's own value is added.
    #[test]
    fn an_asserted_name_may_be_an_identity_header() {
        for name in [
            "x-remote-user",
            "x-auth-request-user",
            "x-ms-client-principal-name",
        ] {
            assert!(!is_reserved(&HeaderName::from_static(name)), "{name}");
        }
        let identity = vec![(
            HeaderName::from_static("x-remote-user"),
            ClaimPath::top("sub"),
        )];
        let mut h = map(&[("X_Remote_User", "root"), ("x-remote-user", "root")]);
        strip_client(&mut h, &identity, false);
        assert!(h.is_empty());
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(
            &X_REQUEST_ID,
            HeaderValue::from_static("bad id with spaces"),
        );
        assert_eq!(request_id(&h).len(), 36);
    }
}
