//! The client socket of a first-message connection, under the pre-authentication budget
//! (`pre_auth`) until its token validates.
//!
//! Every frame header the client sends is charged, with the whole payload it announces, the
//! moment the header has arrived and before the first message's reader sees it: the reader
//! sizes its buffer from the header, so charging there is what bounds memory. A header past
//! the budget fails the read, the bytes are dropped, and nothing is allocated for them.
//! [`Metered::release`] gives the budget back once the token validated; from then on only
//! the route's `max_message_bytes` applies, enforced by the relay.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::proxy::pre_auth::{Held, OverBudget};

pub(crate) type MeteredSocket = Metered<TokioIo<Upgraded>>;

/// Wraps the client side of an upgrade, charging what it reads to `held`.
pub(crate) fn socket(io: Upgraded, held: Held) -> MeteredSocket {
    Metered {
        inner: TokioIo::new(io),
        budget: Some((held, FrameMeter::default())),
    }
}

/// The budget error inside a socket error, if that is what ended the read.
pub(crate) fn over_budget(error: &io::Error) -> Option<OverBudget> {
    error.get_ref()?.downcast_ref().copied()
}

pub(crate) struct Metered<S> {
    inner: S,
    budget: Option<(Held, FrameMeter)>,
}

impl<S> Metered<S> {
    /// The token validated: give the budget back and read freely.
    pub(crate) fn release(&mut self) {
        self.budget = None;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if let Some((held, meter)) = &mut this.budget {
            let announced = meter.feed(buf.filled().get(before..).unwrap_or_default());
            held.take(announced).map_err(io::Error::other)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Follows frame boundaries in the raw byte stream (RFC 6455 §5.2): only headers are
/// parsed, payloads are skipped by length.
#[derive(Debug, Default)]
struct FrameMeter {
    header: [u8; MAX_HEADER],
    have: usize,
    payload_left: u64,
}

const MAX_HEADER: usize = 14;

impl FrameMeter {
    /// The bytes (header and payload) announced by the headers completed in `bytes`.
    fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut announced = 0u64;
        while let Some((&byte, rest)) = bytes.split_first() {
            if self.payload_left > 0 {
                let skip = bytes
                    .len()
                    .min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                self.payload_left -= skip as u64;
                bytes = bytes.get(skip..).unwrap_or_default();
                continue;
            }
            bytes = rest;
            if let Some(slot) = self.header.get_mut(self.have) {
                *slot = byte;
                self.have += 1;
            }
            if let Some((size, payload)) =
                frame_size(self.header.get(..self.have).unwrap_or_default())
            {
                announced = announced.saturating_add(size).saturating_add(payload);
                self.payload_left = payload;
                self.have = 0;
            }
        }
        announced
    }
}

/// `(header size, payload length)` once `h` holds a whole header.
fn frame_size(h: &[u8]) -> Option<(u64, u64)> {
    let second = *h.get(1)?;
    let mask = if second & 0x80 == 0 { 0 } else { 4 };
    let (extended, short) = match second & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let size = 2 + extended + mask;
    if h.len() < size {
        return None;
    }
    let payload = match short {
        Some(n) => n,
        None => h
            .get(2..2 + extended)?
            .iter()
            .fold(0u64, |acc, b| acc << 8 | u64::from(*b)),
    };
    Some((size as u64, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u64) -> Vec<u8> {
        let mut h = vec![0x01];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=65535 => {
                h.push(0x80 | 126);
                h.extend((len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend(len.to_be_bytes());
            }
        }
        h.extend([1, 2, 3, 4]);
        h
    }

    #[test]
    fn headers_are_charged_with_their_announced_payload_at_any_split() {
        let mut stream = header(5);
        stream.extend(b"hello");
        stream.extend(header(300));
        stream.extend(vec![0u8; 300]);
        stream.extend(header(1 << 40));
        let expected = (6 + 5) + (8 + 300) + (14 + (1u64 << 40));
        for chunk in [1, 2, 3, 7, 13, 64, stream.len()] {
            let mut meter = FrameMeter::default();
            let total: u64 = stream.chunks(chunk).map(|c| meter.feed(c)).sum();
            assert_eq!(total, expected, "chunks of {chunk}");
        }
    }

    #[test]
    fn an_unmasked_empty_frame_costs_its_header() {
        let mut meter = FrameMeter::default();
        assert_eq!(meter.feed(&[0x89, 0x00, 0x8a]), 2);
        assert_eq!(meter.feed(&[0x00]), 2);
    }
}
