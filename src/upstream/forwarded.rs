//! The forwarding headers gatehouse vouches for: `Forwarded` (RFC 7239), `X-Forwarded-For`,
//! `X-Forwarded-Proto` and `X-Forwarded-Host`, built from the request's resolved client
//! (`client.rs`: the peer, or what a trusted proxy said).
//!
//! The client's own values are never passed on (`headers::strip_client` drops them in
//! every spelling): each header names one hop, the client gatehouse resolved, so an
//! upstream that trusts gatehouse alone reads the right client without walking a chain.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use http::{HeaderMap, HeaderName, HeaderValue};

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = http::header::FORWARDED;

/// What gatehouse knows about the hop it received a request on.
#[derive(Debug, Clone, PartialEq, Eq)]
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

    #[cfg(test)]
    fn forwarded(&self) -> String {
        self.forwarded_for(&address_text(self.peer))
    }

    /// `for=…;proto=…;host=…` for the client whose address reads `address` (the text of
    /// `self.peer`, which `X-Forwarded-For` carries too); the host is left out when it is
    /// not visible ASCII.
    fn forwarded_for(&self, address: &str) -> String {
        let host = self.host.as_ref().and_then(|h| h.to_str().ok());
        let host = host.map(token_or_quoted);
        // Exactly as long as the value: a string with spare room becomes `Bytes` through a
        // second allocation (`apply`).
        let len = "for=".len()
            + address.len()
            + if self.peer.is_ipv6() {
                "\"[]\"".len()
            } else {
                0
            }
            + ";proto=".len()
            + self.proto().len()
            + host.as_ref().map_or(0, |h| ";host=".len() + h.len());
        let mut value = String::with_capacity(len);
        value.push_str("for=");
        // RFC 7239 §6: an IPv6 node is bracketed, and then must be quoted (`:` is not a tchar).
        match self.peer {
            IpAddr::V4(_) => value.push_str(address),
            IpAddr::V6(_) => {
                value.push_str("\"[");
                value.push_str(address);
                value.push_str("]\"");
            }
        }
        value.push_str(";proto=");
        value.push_str(self.proto());
        if let Some(host) = host {
            value.push_str(";host=");
            value.push_str(&host);
        }
        value
    }

    /// Sets the forwarding headers, replacing any the request still has. `remembered` is
    /// the connection's: its last request's values are used again while the hop is the same.
    pub(crate) fn apply(&self, headers: &mut HeaderMap, remembered: &Remembered) {
        let (forwarded, forwarded_for) = remembered.values(self);
        if let Some(value) = forwarded {
            headers.insert(FORWARDED.clone(), value);
        }
        if let Some(value) = forwarded_for {
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

    /// The `Forwarded` and `X-Forwarded-For` values, each when it is a valid header value.
    fn values(&self) -> (Option<HeaderValue>, Option<HeaderValue>) {
        // The strings become the values' bytes as they are: no copy, and, as they are built
        // exactly as long as their capacity (an IPv6 address aside), no allocation either.
        let owned = |text: String| HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).ok();
        let address = address_text(self.peer);
        (owned(self.forwarded_for(&address)), owned(address))
    }
}

/// The forwarding values of a connection's last request. On a keep-alive connection the
/// client, scheme and host nearly always stay the same, and building the two strings
/// again cost about as much as setting all four headers.
#[derive(Debug, Default)]
pub struct Remembered(Mutex<Option<Last>>);

#[derive(Debug)]
struct Last {
    /// The hop, its host copied: a `Host` value shares the connection's read buffer,
    /// which hyper could then never reuse.
    hop: Hop,
    forwarded: Option<HeaderValue>,
    forwarded_for: Option<HeaderValue>,
}

impl Remembered {
    fn values(&self, hop: &Hop) -> (Option<HeaderValue>, Option<HeaderValue>) {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = last.as_ref().filter(|last| last.hop == *hop) {
            return (last.forwarded.clone(), last.forwarded_for.clone());
        }
        let built = Last::of(hop);
        let values = (built.forwarded.clone(), built.forwarded_for.clone());
        *last = Some(built);
        values
    }
}

impl Last {
    /// Once per connection, nearly always: kept out of line, so that the request path it
    /// sits in stays small enough to be inlined into its caller.
    #[cold]
    fn of(hop: &Hop) -> Self {
        let (forwarded, forwarded_for) = hop.values();
        let copied = |h: &HeaderValue| HeaderValue::from_bytes(h.as_bytes()).ok();
        Self {
            hop: Hop {
                host: hop.host.as_ref().and_then(copied),
                ..hop.clone()
            },
            forwarded,
            forwarded_for,
        }
    }
}

/// An address as `Display` writes it. IPv4, which nearly every client has, is written
/// by hand: `Ipv4Addr`'s `Display` formats four `u8`s with padding support, and the two
/// headers cost 3,300 instructions a request that way, 5 % of a proxied request.
fn address_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let digits = |octet: u8| 1 + usize::from(octet >= 10) + usize::from(octet >= 100);
            let octets = v4.octets();
            let mut text = String::with_capacity(3 + octets.into_iter().map(digits).sum::<usize>());
            for (i, octet) in octets.into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                if octet >= 100 {
                    text.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    text.push(char::from(b'0' + octet / 10 % 10));
                }
                text.push(char::from(b'0' + octet % 10));
            }
            text
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// A value as an RFC 9110 token when it is one, else as a quoted-string.
fn token_or_quoted(value: &str) -> Cow<'_, str> {
    let tchar = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
            )
            || matches!(b, b'^' | b'_' | b'`' | b'|' | b'~')
    };
    if !value.is_empty() && value.bytes().all(tchar) {
        return Cow::Borrowed(value);
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
    Cow::Owned(quoted)
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

    /// IPv4 addresses and every `Forwarded` value; an IPv6 address is `Display`'s.
    #[test]
    fn the_values_fill_their_strings_exactly() {
        for (peer, host) in [
            ("192.0.2.60", Some("api.example")),
            ("10.0.0.1", None),
            ("255.255.255.255", Some("a b")),
            ("2001:db8:cafe::17", Some("api.example:8443")),
        ] {
            let hop = hop(peer, false, host);
            let address = address_text(hop.peer);
            if hop.peer.is_ipv4() {
                assert_eq!(address.len(), address.capacity(), "{peer}");
            }
            let forwarded = hop.forwarded_for(&address);
            assert_eq!(forwarded.len(), forwarded.capacity(), "{forwarded}");
        }
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
    fn ipv4_is_written_as_display_writes_it() {
        // Every octet value, in every position, next to every width of its neighbours.
        for n in 0..=255u8 {
            for (a, b) in [(0, 0), (9, 10), (99, 100), (255, 1)] {
                for octets in [[n, a, b, 7], [a, n, 7, b], [b, 7, n, a], [7, b, a, n]] {
                    let ip = IpAddr::from(octets);
                    assert_eq!(address_text(ip), ip.to_string());
                }
            }
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(address_text(v6), "2001:db8::1");
    }

    #[test]
    fn every_forwarding_header_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("spoofed"));
        h.insert(&X_FORWARDED_HOST, HeaderValue::from_static("evil"));
        h.insert(&FORWARDED, HeaderValue::from_static("for=10.0.0.1"));
        let remembered = Remembered::default();
        hop("127.0.0.1", true, Some("api.example")).apply(&mut h, &remembered);
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "api.example");
        assert_eq!(h[&FORWARDED], "for=127.0.0.1;proto=https;host=api.example");
        hop("127.0.0.1", false, None).apply(&mut h, &remembered);
        assert!(h.get(&X_FORWARDED_HOST).is_none());
        assert_eq!(h.len(), 3);
    }

    /// A connection's next request from the same hop gets the same values; any change of
    /// client, scheme or host gets values of its own.
    #[test]
    fn remembered_values_serve_only_the_same_hop() {
        let remembered = Remembered::default();
        let sent = |hop: Hop| {
            let mut h = HeaderMap::new();
            hop.apply(&mut h, &remembered);
            (h[&FORWARDED].clone(), h[&X_FORWARDED_FOR].clone())
        };
        let same = hop("192.0.2.60", true, Some("a.example"));
        let first = sent(same.clone());
        let again = sent(same.clone());
        assert_eq!(again, first);
        // Used again, not built again: the very same bytes.
        assert_eq!(again.0.as_bytes().as_ptr(), first.0.as_bytes().as_ptr());
        assert_eq!(again.1.as_bytes().as_ptr(), first.1.as_bytes().as_ptr());
        // The remembered host is a copy, not a share of the request's (its read buffer).
        {
            let last = remembered.0.lock().unwrap();
            let kept = last.as_ref().and_then(|l| l.hop.host.as_ref()).unwrap();
            let asked = same.host.as_ref().unwrap();
            assert_eq!(kept, asked);
            assert_ne!(kept.as_bytes().as_ptr(), asked.as_bytes().as_ptr());
        }
        for (peer, https, host, forwarded) in [
            (
                "192.0.2.61",
                true,
                Some("a.example"),
                "for=192.0.2.61;proto=https;host=a.example",
            ),
            (
                "192.0.2.61",
                false,
                Some("a.example"),
                "for=192.0.2.61;proto=http;host=a.example",
            ),
            (
                "192.0.2.61",
                false,
                Some("b.example"),
                "for=192.0.2.61;proto=http;host=b.example",
            ),
            ("192.0.2.61", false, None, "for=192.0.2.61;proto=http"),
            (
                "192.0.2.60",
                true,
                Some("a.example"),
                "for=192.0.2.60;proto=https;host=a.example",
            ),
        ] {
            let (f, xff) = sent(hop(peer, https, host));
            assert_eq!(f, forwarded);
            assert_eq!(xff, peer);
        }
    }
}
