//! What an HTTP/2 upstream says about itself in its connection preface: its first frame,
//! which RFC 9113 §3.4 requires to be `SETTINGS`.
//!
//! hyper keeps the peer's settings to itself, and h2 never checks a request's header list
//! against the peer's `SETTINGS_MAX_HEADER_LIST_SIZE`: an upstream that enforces it (python-h2
//! answers with `GOAWAY`) fails every other request on the connection. So the upstream's
//! bytes pass through [`Preface`] on their way to hyper, unchanged, and the first frame is
//! read on the side. Only the first: the bytes after it are hyper's alone, and a later
//! `SETTINGS` that lowers a limit is honoured by hyper (it queues streams), not by us.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// `SETTINGS` frame type, and the two settings gatehouse reads (RFC 9113 §6.5.2).
const SETTINGS: u8 = 0x4;
const ACK: u8 = 0x1;
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
const MAX_HEADER_LIST_SIZE: u16 = 0x6;
const FRAME_HEADER: usize = 9;
/// The largest frame a peer may send before it has our `SETTINGS` (RFC 9113 §4.2).
const DEFAULT_MAX_FRAME: usize = 16_384;

/// The upstream's own limits; `None`: it set none (RFC 9113: unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PeerSettings {
    pub(crate) max_concurrent_streams: Option<u32>,
    pub(crate) max_header_list_size: Option<u32>,
}

/// The upstream's first frame was not a `SETTINGS` frame: it does not speak HTTP/2.
#[derive(Debug, thiserror::Error)]
#[error("the upstream's first frame was not HTTP/2 SETTINGS")]
pub(crate) struct NotHttp2;

/// An upstream socket whose first frame is read on the side.
pub(crate) struct Preface<S> {
    inner: S,
    /// `None` once the first frame has been read (or found not to be `SETTINGS`).
    watch: Option<Box<Watch>>,
}

struct Watch {
    seen: Vec<u8>,
    report: oneshot::Sender<Result<PeerSettings, NotHttp2>>,
}

impl<S> Preface<S> {
    /// The socket, and where its settings arrive. The receiver fails if the connection
    /// ends before a whole first frame came.
    pub(crate) fn new(inner: S) -> (Self, oneshot::Receiver<Result<PeerSettings, NotHttp2>>) {
        let (report, settings) = oneshot::channel();
        let watch = Watch {
            seen: Vec::with_capacity(FRAME_HEADER),
            report,
        };
        let preface = Self {
            inner,
            watch: Some(Box::new(watch)),
        };
        (preface, settings)
    }

    fn saw(&mut self, bytes: &[u8]) {
        let Some(watch) = self.watch.as_mut() else {
            return;
        };
        let Some(verdict) = watch.feed(bytes) else {
            return;
        };
        if let Some(watch) = self.watch.take() {
            let _ = watch.report.send(verdict);
        }
    }
}

impl Watch {
    /// `Some` once the first frame is whole (or cannot be `SETTINGS`).
    fn feed(&mut self, mut bytes: &[u8]) -> Option<Result<PeerSettings, NotHttp2>> {
        if self.seen.len() < FRAME_HEADER {
            let take = (FRAME_HEADER - self.seen.len()).min(bytes.len());
            self.seen.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.seen.len() < FRAME_HEADER {
                return None;
            }
            if !is_settings(&self.seen) {
                return Some(Err(NotHttp2));
            }
        }
        let whole = FRAME_HEADER + frame_len(&self.seen)?;
        let take = whole.saturating_sub(self.seen.len()).min(bytes.len());
        self.seen.extend_from_slice(&bytes[..take]);
        (self.seen.len() == whole).then(|| Ok(parse(&self.seen)))
    }
}

/// Whether a whole frame header starts a `SETTINGS` frame the peer may send first: not an
/// acknowledgement, on stream 0, of whole entries, within the default frame size.
fn is_settings(header: &[u8]) -> bool {
    let Some(len) = frame_len(header) else {
        return false;
    };
    let stream = header
        .get(5..FRAME_HEADER)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(|s| u32::from_be_bytes(s) & 0x7fff_ffff);
    header[3] == SETTINGS
        && header[4] & ACK == 0
        && stream == Some(0)
        && len % 6 == 0
        && len <= DEFAULT_MAX_FRAME
}

/// The payload length a whole frame header announces.
fn frame_len(seen: &[u8]) -> Option<usize> {
    match seen {
        [a, b, c, _, _, _, _, _, _, ..] => {
            Some(usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c))
        }
        _ => None,
    }
}

/// The settings in a whole `SETTINGS` frame; the last value of a repeated one wins.
fn parse(frame: &[u8]) -> PeerSettings {
    let mut settings = PeerSettings::default();
    for entry in frame[FRAME_HEADER..].chunks_exact(6) {
        let id = u16::from_be_bytes([entry[0], entry[1]]);
        let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
        match id {
            MAX_CONCURRENT_STREAMS => settings.max_concurrent_streams = Some(value),
            MAX_HEADER_LIST_SIZE => settings.max_header_list_size = Some(value),
            _ => {}
        }
    }
    settings
}

impl<S: AsyncRead + Unpin> AsyncRead for Preface<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.watch.is_some() {
            if let Some(new) = buf.filled().get(before..) {
                this.saw(new);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Preface<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_frame(entries: &[(u16, u32)]) -> Vec<u8> {
        let len = entries.len() * 6;
        let mut frame = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            SETTINGS,
            0,
            0,
            0,
            0,
            0,
        ];
        for (id, value) in entries {
            frame.extend_from_slice(&id.to_be_bytes());
            frame.extend_from_slice(&value.to_be_bytes());
        }
        frame
    }

    fn feed_in(pieces: &[&[u8]]) -> Option<Result<PeerSettings, NotHttp2>> {
        let mut watch = Watch {
            seen: Vec::new(),
            report: oneshot::channel().0,
        };
        for piece in pieces {
            if let Some(verdict) = watch.feed(piece) {
                return Some(verdict);
            }
        }
        None
    }

    #[test]
    fn the_first_settings_frame_is_read_whole_or_in_pieces() {
        let mut bytes = settings_frame(&[(0x4, 65_535), (0x3, 100), (0x6, 65_536)]);
        // The next frame (a WINDOW_UPDATE) in the same read is not ours to look at.
        bytes.extend_from_slice(&[0, 0, 4, 0x8, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let want = PeerSettings {
            max_concurrent_streams: Some(100),
            max_header_list_size: Some(65_536),
        };
        assert_eq!(feed_in(&[&bytes]).unwrap().unwrap(), want);
        let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(feed_in(&pieces).unwrap().unwrap(), want);
        let (head, rest) = bytes.split_at(FRAME_HEADER);
        assert_eq!(feed_in(&[head, rest]).unwrap().unwrap(), want);
        let empty = settings_frame(&[]);
        assert_eq!(
            feed_in(&[&empty]).unwrap().unwrap(),
            PeerSettings::default()
        );
        assert!(feed_in(&[&bytes[..12]]).is_none());
    }

    #[test]
    fn anything_else_first_is_not_http2() {
        assert!(feed_in(&[b"HTTP/1.1 400 Bad Request\r\n"])
            .unwrap()
            .is_err());
        let mut ack = settings_frame(&[]);
        ack[4] = ACK;
        assert!(feed_in(&[&ack]).unwrap().is_err());
        let mut odd = settings_frame(&[(0x3, 1)]);
        odd[2] = 5;
        assert!(feed_in(&[&odd]).unwrap().is_err());
    }
}
