//! Who a request is from: the one client address that the access log, every per-client
//! limit and the forwarding headers use.
//!
//! The hop is what sent us the request: the TCP peer, or the PROXY header's source when
//! the peer is a trusted balancer (`edge::proxy_protocol`). A hop outside
//! `listen.trusted_proxies` speaks only for itself: it is the client, and its
//! `X-Forwarded-*` are replaced. A trusted hop vouches for `X-Forwarded-For`, which is
//! walked from the right, past every trusted address, to the first one that is not: that
//! address was written by a proxy we trust, so it is the client. Everything left of it was
//! written by the client or hops it chose, and is never read. When every entry is trusted,
//! the leftmost is the client.
//!
//! The walk is strict, because what it accepts becomes a rate-limit key and a log line:
//! only the exact name `X-Forwarded-For` is read (not `X_Forwarded_For`, which a trusted
//! hop may pass through untouched); field lines are one list in order; an entry must be an
//! IP address in its standard form (`[v6]`, and `:port`, allowed); `010.0.0.1`,
//! `0x0a.0.0.1`, `unknown` or anything else stops the walk, and the client is then the
//! trusted hop that handed us that entry. IPv4-mapped IPv6 is read as IPv4.
//!
//! From a trusted hop, `X-Forwarded-Proto` (`http` or `https`) and `X-Forwarded-Host` (a
//! host\[:port\]) are kept: the last element of each, the value the nearest hop set. A
//! `Forwarded` header is never read: ingress-nginx, AWS ALB and most balancers pass it
//! through from the client untouched while they set `X-Forwarded-*` themselves, so
//! believing it would let any client speak for itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::canonical::valid_host;
use crate::cidr::CidrSet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// No real chain of trusted proxies is this long; the walk stops there.
const MAX_HOPS: usize = 20;

/// The client of one request, carried from `handle` to the access log, the limits and
/// the upstream's forwarding headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Canonical: an IPv4-mapped IPv6 address is IPv4.
    pub addr: IpAddr,
    /// Whether the client used https: on our listener, or as a trusted hop says.
    pub https: bool,
    /// The host the client asked for, as a trusted hop says; `None`: the request's `Host`.
    pub host: Option<HeaderValue>,
    /// Whether a trusted hop's headers decided any of the above.
    pub via_trusted: bool,
}

impl Client {
    /// Resolves the client of a request that `hop` sent on a connection that is `https`
    /// or not.
    pub fn resolve(hop: IpAddr, https: bool, headers: &HeaderMap, trusted: &CidrSet) -> Self {
        let hop = hop.to_canonical();
        if !trusted.contains(hop) {
            return Self {
                addr: hop,
                https,
                host: None,
                via_trusted: false,
            };
        }
        Self {
            addr: walk(hop, headers, trusted),
            https: last_element(headers, &X_FORWARDED_PROTO)
                .and_then(scheme)
                .unwrap_or(https),
            host: last_element(headers, &X_FORWARDED_HOST).and_then(host),
            via_trusted: true,
        }
    }
}

/// The `X-Forwarded-For` walk from a trusted `hop`; see the module docs.
fn walk(hop: IpAddr, headers: &HeaderMap, trusted: &CidrSet) -> IpAddr {
    let entries = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .rev()
        // Split as bytes: a byte that is not visible ASCII spoils only its own entry, never
        // the entries a trusted proxy appended after it on the same line.
        .flat_map(|line| elements(line.as_bytes()));
    let mut client = hop;
    for entry in entries.take(MAX_HOPS) {
        let Some(ip) = std::str::from_utf8(entry).ok().and_then(entry_address) else {
            tracing::debug!(hop = %client, "unreadable X-Forwarded-For entry; the hop is the client");
            break;
        };
        client = ip;
        if !trusted.contains(ip) {
            break;
        }
    }
    client
}

/// An entry's address: `192.0.2.1`, `192.0.2.1:443`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:443`; nothing else.
pub fn entry_address(entry: &str) -> Option<IpAddr> {
    if let Some(bracketed) = entry.strip_prefix('[') {
        let (inside, after) = bracketed.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return inside
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| IpAddr::V6(v6).to_canonical());
    }
    if let Ok(v6) = entry.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6).to_canonical());
    }
    let host = match entry.split_once(':') {
        Some((host, port)) if is_port(port) => host,
        Some(_) => return None,
        None => entry,
    };
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(text: &str) -> bool {
    (1..=5).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && text.parse::<u16>().is_ok()
}

/// A field line's comma-list elements, last first, without their spaces and tabs; empty
/// elements are skipped (RFC 9110 §5.6.1).
fn elements(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.rsplit(|b| *b == b',')
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
}

/// The last element of a comma list over all of a field's lines, if it is readable.
fn last_element<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    let line = headers.get_all(name).iter().next_back()?;
    std::str::from_utf8(elements(line.as_bytes()).next()?).ok()
}

fn scheme(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("https") {
        Some(true)
    } else if value.eq_ignore_ascii_case("http") {
        Some(false)
    } else {
        None
    }
}

/// A host\[:port\] by the rule a client's own `Host` follows (`canonical::valid_host`).
fn host(value: &str) -> Option<HeaderValue> {
    if !valid_host(value.as_bytes()) {
        return None;
    }
    HeaderValue::from_str(value).ok()
}

#[cfg(test)]
#[path = "client/tests.rs"]
mod tests;
