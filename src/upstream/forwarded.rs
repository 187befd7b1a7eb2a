//! The forwarding headers gatehouse vouches for: `Forwarded` (RFC 7239), `X-Forwarded-For`,
//! `X-Forwarded-Proto` and `X-Forwarded-Host`, built from the request's resolved client
//! (`client.rs`: the peer, or what a trusted proxy said).
//!
//! The client's own values are never passed on (`headers::remove_spoofed` drops them in
//! every spelling): each header names one hop, the client gatehouse resolved, so an
//! upstream that trusts gatehouse alone reads the right client without walking a chain.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = http::header::FORWARDED;

/// What gatehouse knows about the hop it received a request on.
#[derive(Debug, Clone)]
pub(crate) struct Hop {
    /// The resolved client; an IPv4-mapped IPv6 address is written as IPv4.
    peer: IpAddr,
    https: bool,
    /// The `Host` (or HTTP/2 `:authority`) the client asked for.
    host: Option<HeaderValue>,
}

impl Hop {
    pub(crate) fn new(peer: IpAddr, https: bool, host: Option<HeaderValue>) -> Self {
        Self {
            peer: peer.to_canonical(),
            https,
            host,
        }
    }

    fn proto(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// `for=…;proto=…;host=…`; the host is left out when it is not visible ASCII.
    pub(crate) fn forwarded(&self) -> String {
        let mut value = format!("for={};proto={}", node(self.peer), self.proto());
        if let Some(host) = self.host.as_ref().and_then(|h| h.to_str().ok()) {
            value.push_str(";host=");
            value.push_str(&token_or_quoted(host));
        }
        value
    }

    /// Sets the forwarding headers, replacing any the request still has.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        // The strings become the values' bytes as they are (no second copy).
        let owned = |text: String| HeaderValue::from_maybe_shared(bytes::Bytes::from(text));
        if let Ok(value) = owned(self.forwarded()) {
            headers.insert(FORWARDED.clone(), value);
        }
        if let Ok(value) = owned(self.peer.to_string()) {
            headers.insert(X_FORWARDED_FOR.clone(), value);
        }
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(self.proto()),
        );
        match &self.host {
            Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
}

/// RFC 7239 §6: an IPv6 node is bracketed, and then must be quoted (`:` is not a tchar).
fn node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

/// A value as an RFC 9110 token when it is one, else as a quoted-string.
fn token_or_quoted(value: &str) -> String {
    let tchar = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
            )
            || matches!(b, b'^' | b'_' | b'`' | b'|' | b'~')
    };
    if !value.is_empty() && value.bytes().all(tchar) {
        return value.to_string();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(peer: &str, https: bool, host: Option<&str>) -> Hop {
        Hop::new(
            peer.parse().unwrap(),
            https,
            host.map(|h| HeaderValue::from_str(h).unwrap()),
        )
    }

    #[test]
    fn forwarded_follows_rfc_7239() {
        assert_eq!(
            hop("192.0.2.60", false, Some("api.example")).forwarded(),
            "for=192.0.2.60;proto=http;host=api.example"
        );
        assert_eq!(
            hop("2001:db8:cafe::17", true, Some("api.example:8443")).forwarded(),
            "for=\"[2001:db8:cafe::17]\";proto=https;host=\"api.example:8443\""
        );
        assert_eq!(
            hop("::ffff:192.0.2.60", true, None).forwarded(),
            "for=192.0.2.60;proto=https"
        );
        assert_eq!(
            hop("192.0.2.60", true, Some("a\"b\\c d")).forwarded(),
            "for=192.0.2.60;proto=https;host=\"a\\\"b\\\\c d\""
        );
    }

    #[test]
    fn every_forwarding_header_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("spoofed"));
        h.insert(&X_FORWARDED_HOST, HeaderValue::from_static("evil"));
        h.insert(&FORWARDED, HeaderValue::from_static("for=10.0.0.1"));
        hop("127.0.0.1", true, Some("api.example")).apply(&mut h);
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "api.example");
        assert_eq!(h[&FORWARDED], "for=127.0.0.1;proto=https;host=api.example");
        hop("127.0.0.1", false, None).apply(&mut h);
        assert!(h.get(&X_FORWARDED_HOST).is_none());
        assert_eq!(h.len(), 3);
    }
}
