//! The PROXY protocol header (versions 1 and 2) an L4 balancer sends before the client's
//! bytes: HAProxy `send-proxy`/`send-proxy-v2`, AWS NLB, and most cloud TCP balancers.
//!
//! Only what gatehouse acts on is read: where the header ends and the client's source
//! address. TLVs are skipped. The parser never indexes, so no input can make it panic
//! (`fuzz/fuzz_targets/proxy_header.rs`), and it says `Invalid` as soon as the bytes so far
//! cannot begin a header, so a client that sends HTTP or TLS instead is turned away at
//! once rather than when the header clock runs out.
//!
//! A header that names no address (v1 `UNKNOWN`, v2 `LOCAL`, as balancers send for their
//! own health checks, and v2 `UNSPEC`/`UNIX`) is valid and means "use the connection's
//! own peer".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12 bytes that open a version 2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The spec's limit for a v1 line, `\r\n` included.
const V1_MAX: usize = 107;
/// A v2 header may carry 64 KiB of TLVs; balancers send a few dozen bytes (AWS: the VPC
/// endpoint id). More than this is refused rather than buffered.
pub const V2_MAX: usize = 16 + 4096;

/// What the bytes read so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A header could still follow; read more.
    Incomplete,
    /// A whole header of `len` bytes; `source` is the client, `None` when it names none.
    Header {
        len: usize,
        source: Option<SocketAddr>,
    },
    Invalid(&'static str),
}

/// Parses the start of a connection's bytes.
pub fn parse(buf: &[u8]) -> Parsed {
    if starts_as(buf, V2_SIGNATURE) {
        if buf.len() < V2_SIGNATURE.len() {
            return Parsed::Incomplete;
        }
        return parse_v2(buf);
    }
    if starts_as(buf, V1_PREFIX) {
        return parse_v1(buf);
    }
    Parsed::Invalid("the connection does not start with a PROXY protocol header")
}

/// Whether `buf` and `prefix` agree on their common length.
fn starts_as(buf: &[u8], prefix: &[u8]) -> bool {
    buf.iter().zip(prefix).all(|(a, b)| a == b)
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let window = buf.get(..V1_MAX).unwrap_or(buf);
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX || window.contains(&b'\n') {
            Parsed::Invalid("PROXY v1 line too long or not ended by CRLF")
        } else {
            Parsed::Incomplete
        };
    };
    let line = window.get(V1_PREFIX.len()..end).unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return Parsed::Invalid("PROXY v1 line is not ASCII");
    };
    let len = end + 2;
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["UNKNOWN", ..] => Parsed::Header { len, source: None },
        [family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v4 = *family == "TCP4";
            match (
                v1_addr(src, v4),
                v1_addr(dst, v4),
                v1_port(sport),
                v1_port(dport),
            ) {
                (Some(ip), Some(_), Some(port), Some(_)) => Parsed::Header {
                    len,
                    source: Some(SocketAddr::new(ip, port)),
                },
                _ => Parsed::Invalid("PROXY v1 addresses or ports are malformed"),
            }
        }
        _ => Parsed::Invalid("PROXY v1 line is malformed"),
    }
}

/// Rust's parsers are strict: dotted-decimal IPv4 without leading zeros, no zone ids.
fn v1_addr(text: &str, v4: bool) -> Option<IpAddr> {
    if v4 {
        text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else {
        text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    }
}

/// Decimal, no sign, no leading zero (the spec's form).
fn v1_port(text: &str) -> Option<u16> {
    let canonical = !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

fn parse_v2(buf: &[u8]) -> Parsed {
    let (Some(&ver_cmd), Some(&family), Some(&hi), Some(&lo)) =
        (buf.get(12), buf.get(13), buf.get(14), buf.get(15))
    else {
        return Parsed::Incomplete;
    };
    if ver_cmd >> 4 != 2 {
        return Parsed::Invalid("PROXY v2 version is not 2");
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Parsed::Invalid("PROXY v2 command is neither LOCAL nor PROXY"),
    };
    if !matches!(family & 0x0f, 0 | 1) {
        return Parsed::Invalid("PROXY v2 transport is not a stream");
    }
    if family >> 4 > 3 {
        return Parsed::Invalid("PROXY v2 address family is unknown");
    }
    let len = 16 + usize::from(u16::from_be_bytes([hi, lo]));
    if len > V2_MAX {
        return Parsed::Invalid("PROXY v2 header too long");
    }
    let Some(body) = buf.get(16..len) else {
        return Parsed::Incomplete;
    };
    let source =
        match family >> 4 {
            1 => v2_source::<4>(body)
                .map(|(ip, port)| SocketAddr::new(Ipv4Addr::from(ip).into(), port)),
            2 => v2_source::<16>(body)
                .map(|(ip, port)| SocketAddr::new(Ipv6Addr::from(ip).into(), port)),
            _ => None,
        };
    match family >> 4 {
        1 | 2 if source.is_none() && !local => {
            Parsed::Invalid("PROXY v2 header is too short for its addresses")
        }
        _ => Parsed::Header {
            len,
            source: source.filter(|_| !local),
        },
    }
}

/// The source address and port of an INET (`N` = 4) or INET6 (`N` = 16) address block:
/// source, destination, source port, destination port.
fn v2_source<const N: usize>(body: &[u8]) -> Option<([u8; N], u16)> {
    let ip: [u8; N] = body.get(..N)?.try_into().ok()?;
    let port = body.get(2 * N..2 * N + 2)?;
    Some((ip, u16::from_be_bytes([*port.first()?, *port.get(1)?])))
}

/// Why a connection that had to start with a PROXY header was closed.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error("the connection closed before a whole PROXY header")]
    Closed,
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads a PROXY header from `io`; returns the client it names and the bytes read past it,
/// which belong to the client's own stream. Callers bound it with the header clock.
pub async fn read_header<S: AsyncRead + Unpin>(
    io: &mut S,
) -> Result<(Option<SocketAddr>, Bytes), HeaderError> {
    let mut buf = BytesMut::with_capacity(512);
    loop {
        if io.read_buf(&mut buf).await? == 0 {
            return Err(HeaderError::Closed);
        }
        match parse(&buf) {
            Parsed::Incomplete => buf.reserve(512),
            Parsed::Invalid(why) => return Err(HeaderError::Invalid(why)),
            Parsed::Header { len, source } => {
                let rest = buf.split_off(len.min(buf.len()));
                return Ok((source, rest.freeze()));
            }
        }
    }
}

#[cfg(test)]
#[path = "proxy_protocol/tests.rs"]
mod tests;
