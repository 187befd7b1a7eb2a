//! Whether a new client connection is served: at most `max_connections` in all and
//! `max_connections_per_ip` from one address.
//!
//! A connection over a limit is accepted and answered at once rather than left in the
//! kernel's backlog, where a client would only see a hang: plain HTTP gets `503` (over the
//! global cap) or `429` (over its address's cap) with `Retry-After`, then the connection
//! closes. TLS connections are closed without a handshake, which is the expensive part a
//! flood would otherwise buy. The limits are read per accept, so a reload changes them for
//! the next connection.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use prometheus::IntGauge;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a connection was turned away; also its metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    PerIp,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
        }
    }

    fn response(self) -> &'static [u8] {
        match self {
            Refusal::MaxConnections => b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n\
                content-type: application/json\r\ncontent-length: 70\r\nconnection: close\r\n\r\n\
                {\"error\":\"over_capacity\",\"message\":\"too many connections, try again\"}\n",
            Refusal::PerIp => b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\n\
                content-type: application/json\r\ncontent-length: 76\r\nconnection: close\r\n\r\n\
                {\"error\":\"rate_limited\",\"message\":\"too many connections from this address\"}\n",
        }
    }
}

/// The open-connection counts every accepted connection is checked against.
pub struct Admission {
    open: AtomicUsize,
    per_ip: DashMap<IpAddr, usize>,
    gauge: IntGauge,
    /// Refusals being answered; past `MAX_ANSWERING` a refused connection is just closed.
    answering: Arc<AtomicUsize>,
}

/// Answering refusals must not become the resource a flood exhausts.
const MAX_ANSWERING: usize = 1024;

impl Admission {
    pub fn new(gauge: IntGauge) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            per_ip: DashMap::new(),
            gauge,
            answering: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Takes a place for a connection from `ip`, or says why there is none.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        max: usize,
        max_per_ip: usize,
    ) -> Result<ConnSlot, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::MaxConnections);
        }
        let counted_ip = if max_per_ip > 0 {
            let mut count = self.per_ip.entry(ip).or_insert(0);
            if *count >= max_per_ip {
                drop(count);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::PerIp);
            }
            *count += 1;
            Some(ip)
        } else {
            None
        };
        self.gauge.inc();
        Ok(ConnSlot {
            admission: self.clone(),
            ip: counted_ip,
        })
    }

    /// Answers a refused plain-HTTP connection in the background, or closes it at once
    /// when too many answers are already under way.
    pub fn refuse(
        &self,
        stream: TcpStream,
        refusal: Refusal,
        tracker: &tokio_util::task::TaskTracker,
    ) {
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
pub struct ConnSlot {
    admission: Arc<Admission>,
    ip: Option<IpAddr>,
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
async fn answer(mut stream: TcpStream, refusal: Refusal) {
    let answer = async {
        let mut head = Vec::with_capacity(1024);
        let mut chunk = [0u8; 2048];
        while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await? {
                0 => return Ok(()),
                n => head.extend_from_slice(&chunk[..n]),
            }
        }
        stream.write_all(refusal.response()).await?;
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
            let text = std::str::from_utf8(refusal.response()).unwrap_or_default();
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
            let declared = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.parse::<usize>().ok());
            assert_eq!(declared, Some(body.len()), "{head}");
        }
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
}
