//! Whether a new client connection is served: at most `max_connections` in all and
//! `max_connections_per_ip` from one address.
//!
//! A connection over a limit is accepted and answered at once rather than left in the
//! kernel's backlog, where a client would only see a hang: plain HTTP gets `503` (over the
//! global cap) or `429` (over its address's cap) with `Retry-After`, then the connection
//! closes. TLS connections are closed without a handshake, which is the expensive part a
//! flood would otherwise buy. The limits are read per accept, so a reload changes them for
//! the next connection.
//!
//! Addresses are counted by `cidr::client_key`: an IPv6 client by its /64. A connection from
//! a trusted proxy is admitted without a per-address count (it carries many clients); with
//! PROXY protocol the listener counts it against the header's source once read
//! ([`ConnSlot::count_ip`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use http::HeaderValue;
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cidr::client_key;
use crate::upstream::headers::X_REQUEST_ID;

/// Why a connection was turned away; also its metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    MaxConnections,
    PerIp,
}

impl Refusal {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
        }
    }

    /// The answer, with the `X-Request-Id` every answer of the proxy listener carries.
    fn response(self, request_id: &HeaderValue) -> Vec<u8> {
        let (status, body) = match self {
            Refusal::MaxConnections => (
                "503 Service Unavailable",
                "{\"error\":\"over_capacity\",\"message\":\"too many connections, try again\"}\n",
            ),
            Refusal::PerIp => (
                "429 Too Many Requests",
                "{\"error\":\"rate_limited\",\"message\":\"too many connections from this address\"}\n",
            ),
        };
        let mut out = format!(
            "HTTP/1.1 {status}\r\nretry-after: 1\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\nx-request-id: ",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(request_id.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// The client's `X-Request-Id` from a request head when it is a sane one, as for every
/// other request, else a fresh one.
fn request_id(head: &[u8]) -> HeaderValue {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut slots);
    let mut headers = http::HeaderMap::new();
    // A head that does not parse (or has more headers than slots) gets a fresh id.
    if parsed.parse(head).is_ok() {
        let sent = parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(X_REQUEST_ID.as_str()))
            .and_then(|h| HeaderValue::from_bytes(h.value).ok());
        if let Some(value) = sent {
            headers.insert(X_REQUEST_ID.clone(), value);
        }
    }
    crate::upstream::headers::request_id(&headers)
}

/// The open-connection counts every accepted connection is checked against.
pub(crate) struct Admission {
    open: AtomicUsize,
    per_ip: DashMap<IpAddr, usize>,
    gauge: IntGauge,
    /// Refusals being answered; past `MAX_ANSWERING` a refused connection is just closed.
    answering: Arc<AtomicUsize>,
}

/// Answering refusals must not become the resource a flood exhausts.
const MAX_ANSWERING: usize = 1024;

impl Admission {
    pub(crate) fn new(gauge: IntGauge) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            per_ip: DashMap::new(),
            gauge,
            answering: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Takes a place for a connection from `ip`, or says why there is none.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        max: usize,
        max_per_ip: usize,
    ) -> Result<ConnSlot, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::MaxConnections);
        }
        self.gauge.inc();
        let mut slot = ConnSlot {
            admission: self.clone(),
            ip: None,
        };
        // On refusal the slot drops here, giving its global place back.
        slot.count_ip(ip, max_per_ip)?;
        Ok(slot)
    }

    /// Answers a refused plain-HTTP connection in the background, or closes it at once
    /// when too many answers are already under way.
    pub(crate) fn refuse<S>(
        &self,
        stream: S,
        refusal: Refusal,
        tracker: &tokio_util::task::TaskTracker,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if self.answering.fetch_add(1, Ordering::AcqRel) >= MAX_ANSWERING {
            self.answering.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let answering = self.answering.clone();
        tracker.spawn(async move {
            answer(stream, refusal).await;
            answering.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// One client connection's place. The connection holds it, and so does the WebSocket
/// session it may turn into: an upgraded connection keeps counting until the session ends.
pub(crate) struct ConnSlot {
    admission: Arc<Admission>,
    ip: Option<IpAddr>,
}

impl ConnSlot {
    /// Counts this connection against `ip`'s key (`max_per_ip` 0 = off); a slot counts
    /// against one address at most, so a second call is a no-op.
    pub(crate) fn count_ip(&mut self, ip: IpAddr, max_per_ip: usize) -> Result<(), Refusal> {
        if max_per_ip == 0 || self.ip.is_some() {
            return Ok(());
        }
        let key = client_key(ip);
        let mut count = self.admission.per_ip.entry(key).or_insert(0);
        if *count >= max_per_ip {
            return Err(Refusal::PerIp);
        }
        *count += 1;
        self.ip = Some(key);
        Ok(())
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let admission = &self.admission;
        admission.open.fetch_sub(1, Ordering::AcqRel);
        admission.gauge.dec();
        if let Some(ip) = self.ip {
            if let Some(mut count) = admission.per_ip.get_mut(&ip) {
                *count = count.saturating_sub(1);
            }
            admission.per_ip.remove_if(&ip, |_, count| *count == 0);
        }
    }
}

/// Answers a refused plain-HTTP connection and closes it. The request head is read first
/// (briefly, boundedly): clients treat an answer that arrives before their request as a
/// broken connection, and unread bytes at close would reset it under the answer.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, refusal: Refusal) {
    let answer = async {
        let mut head = Vec::with_capacity(1024);
        let mut chunk = [0u8; 2048];
        while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await? {
                0 => return Ok(()),
                n => head.extend_from_slice(&chunk[..n]),
            }
        }
        stream
            .write_all(&refusal.response(&request_id(&head)))
            .await?;
        stream.shutdown().await?;
        // Whatever else the client sends (a body) is read and dropped until it closes.
        while stream.read(&mut chunk).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), answer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_their_content_length() {
        for refusal in [Refusal::MaxConnections, Refusal::PerIp] {
            let response = refusal.response(&HeaderValue::from_static("id-1"));
            let text = std::str::from_utf8(&response).unwrap_or_default();
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
            let declared = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.parse::<usize>().ok());
            assert_eq!(declared, Some(body.len()), "{head}");
        }
    }

    #[test]
    fn the_answer_echoes_a_sane_request_id_and_makes_one_otherwise() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-1\r\n\r\n";
        assert_eq!(request_id(head), "abc-1");
        let insane = b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: a b\r\n\r\n";
        assert_eq!(request_id(insane).len(), 36);
        assert_eq!(request_id(b"garbage").len(), 36);
    }

    #[test]
    fn slots_count_and_free_per_address() {
        let admission = Admission::new(IntGauge::new("g", "g").unwrap_or_else(|_| unreachable!()));
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let first = admission.admit(a, 3, 1);
        assert!(first.is_ok());
        assert_eq!(admission.admit(a, 3, 1).err(), Some(Refusal::PerIp));
        let second = admission.admit(b, 3, 1);
        assert!(second.is_ok());
        drop(first);
        let third = admission.admit(a, 3, 1);
        assert!(third.is_ok());
        assert_eq!(
            admission.admit([10, 0, 0, 3].into(), 2, 0).err(),
            Some(Refusal::MaxConnections)
        );
        assert_eq!(admission.gauge.get(), 2);
        drop((second, third));
        assert!(admission.per_ip.is_empty());
        assert_eq!(admission.gauge.get(), 0);
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_late_counts_free_their_place() {
        let admission = Admission::new(IntGauge::new("g", "g").unwrap_or_else(|_| unreachable!()));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|_| unreachable!());
        let first = admission.admit(ip("2001:db8:1:2::1"), 9, 1);
        assert!(first.is_ok());
        let same_64 = admission.admit(ip("2001:db8:1:2:ffff::9"), 9, 1);
        assert_eq!(same_64.err(), Some(Refusal::PerIp));
        assert!(admission.admit(ip("2001:db8:1:3::1"), 9, 1).is_ok());
        // Admitted uncounted (a trusted proxy), then counted against the PROXY source.
        let mut late = admission
            .admit(ip("10.0.0.1"), 9, 0)
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(late.count_ip(ip("2001:db8:1:2::7"), 1), Err(Refusal::PerIp));
        assert_eq!(late.count_ip(ip("203.0.113.1"), 1), Ok(()));
        assert_eq!(late.count_ip(ip("203.0.113.1"), 1), Ok(()), "counted once");
        drop(late);
        assert_eq!(admission.gauge.get(), 1);
        assert!(admission.per_ip.get(&ip("203.0.113.1")).is_none());
    }
}
