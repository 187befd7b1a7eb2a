//! The request-target forms (RFC 9112 3.2) and HTTP/2 pseudo-headers, reduced to one
//! origin-form URI whose path went through [`super::path`].
//!
//! hyper hands HTTP/2 requests over with an absolute URI built from `:scheme`,
//! `:authority` and `:path`, and HTTP/1.1 absolute-form targets the same way; both become
//! origin-form here, so routing never sees an authority the client chose. An origin-form
//! request carries one well-formed `Host`, which gatehouse passes on as
//! `X-Forwarded-Host`.

use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Uri, Version};

use super::{path, PathRules, Refusal};

/// What the canonicalisation needs to know about one request.
pub struct Target<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub version: Version,
    pub headers: &'a HeaderMap,
    /// The connection is TLS: the only scheme an absolute target may name is `https`.
    pub https: bool,
}

/// The canonical origin-form target, and the `Host` to set when HTTP/2 gave only
/// `:authority` (it feeds `X-Forwarded-Host`).
#[derive(Debug)]
pub struct Canonical {
    pub uri: Uri,
    pub host: Option<HeaderValue>,
}

/// Canonicalises a request target, or says why it cannot be made unambiguous.
pub fn target(t: &Target<'_>, rules: &PathRules) -> Result<Canonical, Refusal> {
    if t.method == Method::CONNECT {
        return Err(Refusal::Connect);
    }
    let host = authority_check(t)?;
    let raw = t.uri.path();
    if raw == "*" && t.uri.authority().is_none() {
        // `OPTIONS *` asks about the server: no route matches it, so it is answered 404
        // here and never forwarded.
        return match *t.method == Method::OPTIONS {
            true => Ok(Canonical {
                uri: t.uri.clone(),
                host,
            }),
            false => Err(Refusal::NotOriginForm),
        };
    }
    let canonical = path(raw, rules)?;
    // Usually nothing changed: the client's target is shared, not copied and parsed again
    // (a query can carry a 600-byte token).
    if canonical == raw {
        if let Some(unchanged) = t.uri.path_and_query() {
            return Ok(Canonical {
                uri: Uri::from(unchanged.clone()),
                host,
            });
        }
    }
    let path_and_query = match t.uri.query() {
        Some(query) => PathAndQuery::try_from(format!("{canonical}?{query}")),
        None => PathAndQuery::try_from(canonical.into_owned()),
    }
    .map_err(|_| Refusal::NotOriginForm)?;
    Ok(Canonical {
        uri: Uri::from(path_and_query),
        host,
    })
}

/// Checks an absolute-form target (HTTP/1.1) or the pseudo-headers (HTTP/2) against the
/// connection and `Host`; returns a `Host` to add when HTTP/2 sent none.
fn authority_check(t: &Target<'_>) -> Result<Option<HeaderValue>, Refusal> {
    let Some(authority) = t.uri.authority() else {
        return host_check(t).map(|()| None);
    };
    let Some(scheme) = t.uri.scheme_str() else {
        // Authority-form (`host:port`) belongs to CONNECT, refused above.
        return Err(Refusal::NotOriginForm);
    };
    // HTTP/2 `:scheme` is not checked against the connection: a TLS-terminating balancer
    // that forwards h2c keeps `https`, and the scheme plays no part in routing.
    let is = |name: &str| scheme.eq_ignore_ascii_case(name);
    let scheme_ok = match t.version {
        Version::HTTP_2 => is("http") || is("https"),
        _ => is(if t.https { "https" } else { "http" }),
    };
    if !scheme_ok || !valid_host(authority.as_str().as_bytes()) {
        return Err(Refusal::TargetMismatch);
    }
    let host = t.headers.get_all(HOST);
    let mut hosts = host.iter();
    match (hosts.next(), hosts.next(), t.version) {
        (Some(_), Some(_), _) => Err(Refusal::HostMismatch),
        (Some(h), None, _) if same_host(h, authority.as_str()) => Ok(None),
        (Some(_), None, Version::HTTP_2) => Err(Refusal::HostMismatch),
        (Some(_), None, _) => Err(Refusal::TargetMismatch),
        (None, _, Version::HTTP_2) => HeaderValue::from_str(authority.as_str())
            .map(Some)
            .map_err(|_| Refusal::TargetMismatch),
        (None, _, _) => Err(Refusal::TargetMismatch),
    }
}

/// An origin-form request's `Host` (RFC 9112 3.2): exactly one on HTTP/1.1, at most one
/// otherwise, and a host name or address with an optional port. What gatehouse forwards
/// as `X-Forwarded-Host` and `Forwarded: host=` is then one name a backend cannot split
/// (`a, b`) or read another way (`user@host`, `host:99999`).
fn host_check(t: &Target<'_>) -> Result<(), Refusal> {
    let mut hosts = t.headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(Refusal::BadHost),
        (Some(host), None) if host.is_empty() || valid_host(host.as_bytes()) => Ok(()),
        (Some(_), None) => Err(Refusal::BadHost),
        (None, _) if t.version == Version::HTTP_11 => Err(Refusal::BadHost),
        (None, _) => Ok(()),
    }
}

/// `host [":" port]`: a DNS name or IPv4 address (letters, digits, `-._~`), or an IPv6
/// literal in brackets; a port of 1 to 5 digits up to 65535. Stricter than the URI
/// grammar's reg-name, whose sub-delimiters (`,;=&`) no host name uses.
pub(crate) fn valid_host(authority: &[u8]) -> bool {
    let port = if let Some(literal) = authority.strip_prefix(b"[") {
        let Some(end) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let ipv6 = |b: &u8| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' | b':' | b'.');
        if end == 0 || !literal[..end].iter().all(ipv6) {
            return false;
        }
        &literal[end + 1..]
    } else {
        let colon = authority.iter().position(|&b| b == b':');
        let (name, port) = authority.split_at(colon.unwrap_or(authority.len()));
        let dns = |b: &u8| matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~');
        if name.is_empty() || !name.iter().all(dns) {
            return false;
        }
        port
    };
    match port {
        [] => true,
        [b':', digits @ ..] if (1..=5).contains(&digits.len()) => {
            let mut value = 0u32;
            for &d in digits {
                if !d.is_ascii_digit() {
                    return false;
                }
                value = value * 10 + u32::from(d - b'0');
            }
            value <= u32::from(u16::MAX)
        }
        _ => false,
    }
}

fn same_host(header: &HeaderValue, authority: &str) -> bool {
    header.as_bytes().eq_ignore_ascii_case(authority.as_bytes())
}
