//! The two sockets of a session and the bytes between them. Each [`Lane`] carries one
//! direction: a [`Scanner`] over what one side sends and the [`Outbox`] of what the other
//! side has still to be sent. Reads go into a per-thread buffer, taken only while a socket
//! has bytes; a lane keeps memory of its own only while its peer is slower than its source
//! (the unsent rest, freed once sent), so an idle session holds no buffer at all.
//!
//! A lane reads its source only once its outbox is empty: backpressure, as before, with at
//! most one read's worth buffered per direction. Frames gatehouse adds (pongs, closes) go
//! in only at a frame boundary of the stream they join.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::{Ending, Side, Tally};
use crate::websocket::frame;
use crate::websocket::scan::{Event, Scanner};

/// One read's worth: large enough for a burst of small frames or a good slice of a large one.
const READ_BYTES: usize = 16 * 1024;

/// One direction: what `from` sends, on its way to the other side.
pub(super) struct Lane {
    pub(super) scan: Scanner,
    pub(super) out: Outbox,
}

impl Lane {
    pub(super) fn new(from: Side, max_message_bytes: usize) -> Self {
        Lane {
            scan: Scanner::new(from == Side::Client, max_message_bytes),
            out: Outbox::default(),
        }
    }
}

/// Bytes for one side that it has not taken yet.
#[derive(Default)]
pub(super) struct Outbox {
    pending: Vec<u8>,
    written: usize,
    unflushed: bool,
    /// The one pong owed to this side, waiting for the frame being copied to it to end or
    /// for the side to take what is pending.
    owed: Option<Vec<u8>>,
    /// Bytes were added from outside this lane's own poll: poll it again.
    kicked: bool,
}

impl Outbox {
    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        self.kicked = true;
    }

    /// Writes what is pending and flushes; `Ready(Ok)` once the side has taken it all.
    pub(super) fn poll_drain<W>(&mut self, io: &mut W, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        W: AsyncWrite + Unpin,
    {
        self.kicked = false;
        while let Some(rest) = self.pending.get(self.written..).filter(|r| !r.is_empty()) {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
            self.unflushed = true;
        }
        if self.written > 0 {
            // Freed, not kept: an idle session must not hold a buffer.
            self.pending = Vec::new();
            self.written = 0;
        }
        if self.unflushed {
            ready!(Pin::new(&mut *io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes `bytes` now as far as the side takes them; keeps the rest. Only when empty.
    fn send<W>(&mut self, io: &mut W, cx: &mut Context<'_>, bytes: &[u8]) -> io::Result<()>
    where
        W: AsyncWrite + Unpin,
    {
        let mut rest = bytes;
        while !rest.is_empty() {
            match Pin::new(&mut *io).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => rest = rest.get(n..).unwrap_or_default(),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
            self.unflushed = true;
        }
        self.pending.extend_from_slice(rest);
        if self.pending.is_empty() && self.unflushed {
            if let Poll::Ready(result) = Pin::new(&mut *io).poll_flush(cx) {
                result?;
                self.unflushed = false;
            }
        }
        Ok(())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending.len() == self.written && !self.unflushed
    }
}

struct Buffers {
    input: Box<[u8]>,
    out: Vec<u8>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers {
        input: vec![0; READ_BYTES].into_boxed_slice(),
        out: Vec::with_capacity(READ_BYTES + 256),
    });
}

/// Runs `f` with this thread's read and output buffers (fresh ones if they are in use).
pub(super) fn with_buffers<T>(f: impl FnOnce(&mut [u8], &mut Vec<u8>) -> T) -> T {
    BUFFERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut b) => {
            let Buffers { input, out } = &mut *b;
            out.clear();
            f(input, out)
        }
        Err(_) => f(&mut vec![0; READ_BYTES], &mut Vec::new()),
    })
}

/// Moves one direction along until it must wait or the session must end.
pub(super) fn poll_lane<S, D>(
    cx: &mut Context<'_>,
    (src, dst): (&mut S, &mut D),
    (lane, back): (&mut Lane, &mut Lane),
    side: Side,
    tally: &Tally,
) -> Poll<Ending>
where
    S: AsyncRead + Unpin,
    D: AsyncWrite + Unpin,
{
    loop {
        if ready!(lane.out.poll_drain(dst, cx)).is_err() {
            return Poll::Ready(Ending::Unwritable(side.other()));
        }
        if lane.scan.at_boundary() {
            if let Some(pong) = lane.out.owed.take() {
                lane.out.push(&pong);
                continue;
            }
        }
        tally.sending(side.other(), None);
        let step = with_buffers(|input, out| {
            let mut buf = ReadBuf::new(input);
            match Pin::new(&mut *src).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(Some(Ending::Gone(side))),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    return Poll::Ready(Some(Ending::Gone(side)))
                }
                Poll::Ready(Ok(())) => {}
            }
            let now = Instant::now();
            tally.read_at(now);
            let ending = feed(lane, back, buf.filled(), out, side);
            if lane.out.send(dst, cx, out).is_err() {
                return Poll::Ready(Some(Ending::Unwritable(side.other())));
            }
            if !lane.out.is_empty() {
                tally.sending(side.other(), Some(now));
            }
            Poll::Ready(ending)
        });
        if let Some(ending) = ready!(step) {
            return Poll::Ready(ending);
        }
    }
}

/// Scans one read, queueing pongs for the sender; the ending it found, if any.
fn feed(
    lane: &mut Lane,
    back: &mut Lane,
    mut input: &[u8],
    out: &mut Vec<u8>,
    side: Side,
) -> Option<Ending> {
    loop {
        let (used, event) = lane.scan.scan(input, out);
        input = input.get(used..).unwrap_or_default();
        match event? {
            Event::Ping(payload) => owe_pong(back, payload.as_slice(), side),
            Event::Boundary => {
                if let Some(pong) = lane.out.owed.take() {
                    out.extend_from_slice(&pong);
                }
            }
            Event::Close(frame) => return Some(Ending::Closed(side, frame)),
            Event::TooBig => return Some(Ending::TooBig),
            Event::Violation(why) => {
                tracing::debug!(from = ?side, why, "websocket protocol violation");
                return Some(Ending::Gone(side));
            }
        }
    }
}

/// Answers a ping from `to`: at once when the stream to it is between frames and it has
/// taken everything sent to it, else once it has (a newer ping replaces an unsent pong, as
/// RFC 6455 §5.5.3 allows). A side that pings and never reads is still read, since its
/// other frames must reach the upstream, so queueing every pong would hold its whole flood.
fn owe_pong(back: &mut Lane, payload: &[u8], to: Side) {
    let pong = frame::control(frame::OP_PONG, payload, mask_for(to));
    if back.scan.at_boundary() && back.out.is_empty() {
        back.out.push(&pong);
    } else {
        back.out.owed = Some(pong);
        // Between frames, `poll_lane` sends it once the side has taken what is pending.
        back.scan.wake_at_boundary = !back.scan.at_boundary();
    }
}

/// Frames gatehouse writes to the upstream are masked, as a client's must be.
pub(super) fn mask_for(to: Side) -> Option<[u8; 4]> {
    (to == Side::Upstream).then(rand::random::<[u8; 4]>)
}

/// What is left to do for one side as the session ends.
pub(super) enum Bye {
    /// Let the frame in flight to this side end, then send this close frame.
    Close(Vec<u8>),
    /// Send what is queued.
    Flush,
    Done,
}

/// Drives one side's goodbye; the frame in flight to it is finished from its source first,
/// so the close lands between frames. A source that cannot finish it gets the side cut.
pub(super) fn poll_bye<S, D>(
    cx: &mut Context<'_>,
    (src, dst): (&mut S, &mut D),
    lane: &mut Lane,
    bye: &mut Bye,
) -> Poll<()>
where
    S: AsyncRead + Unpin,
    D: AsyncWrite + Unpin,
{
    loop {
        let next = match bye {
            Bye::Done => return Poll::Ready(()),
            _ if ready!(lane.out.poll_drain(dst, cx)).is_err() => Bye::Done,
            Bye::Flush => Bye::Done,
            Bye::Close(close) if lane.scan.at_boundary() => {
                lane.out.push(close);
                Bye::Flush
            }
            Bye::Close(_) => match ready!(finish_frame(cx, src, dst, lane)) {
                Ok(()) => continue,
                Err(_) => Bye::Done,
            },
        };
        *bye = next;
    }
}

/// Copies more of the data frame in flight, never past its end.
fn finish_frame<S, D>(
    cx: &mut Context<'_>,
    src: &mut S,
    dst: &mut D,
    lane: &mut Lane,
) -> Poll<io::Result<()>>
where
    S: AsyncRead + Unpin,
    D: AsyncWrite + Unpin,
{
    with_buffers(|input, out| {
        let left = usize::try_from(lane.scan.frame_left()).unwrap_or(usize::MAX);
        let limit = input.len().min(left);
        let mut buf = ReadBuf::new(input.get_mut(..limit).unwrap_or_default());
        ready!(Pin::new(&mut *src).poll_read(cx, &mut buf))?;
        if buf.filled().is_empty() {
            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
        }
        lane.scan.scan(buf.filled(), out);
        Poll::Ready(lane.out.send(dst, cx, out))
    })
}

/// A session's two sockets and its two lanes.
pub(super) struct Wire<C, U> {
    client: C,
    upstream: U,
    /// Client to upstream.
    up: Lane,
    /// Upstream to client.
    down: Lane,
}

impl<C, U> Wire<C, U>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    pub(super) fn new(client: C, upstream: U, max_message_bytes: usize) -> Self {
        Wire {
            client,
            upstream,
            up: Lane::new(Side::Client, max_message_bytes),
            down: Lane::new(Side::Upstream, max_message_bytes),
        }
    }

    /// Relays both ways until something ends the session.
    pub(super) fn poll_pump(&mut self, cx: &mut Context<'_>, tally: &Tally) -> Poll<Ending> {
        loop {
            let (c, u) = (&mut self.client, &mut self.upstream);
            let up = poll_lane(
                cx,
                (&mut *c, &mut *u),
                (&mut self.up, &mut self.down),
                Side::Client,
                tally,
            );
            if let Poll::Ready(ending) = up {
                return Poll::Ready(ending);
            }
            let down = poll_lane(
                cx,
                (u, c),
                (&mut self.down, &mut self.up),
                Side::Upstream,
                tally,
            );
            if let Poll::Ready(ending) = down {
                return Poll::Ready(ending);
            }
            // A pong queued for the client lane after it was polled: send it now.
            if !self.up.out.kicked && !self.down.out.kicked {
                return Poll::Pending;
            }
        }
    }

    /// Sends both sides their goodbyes; `byes` is `[client, upstream]`.
    pub(super) fn poll_byes(&mut self, cx: &mut Context<'_>, byes: &mut [Bye; 2]) -> Poll<()> {
        let [to_client, to_upstream] = byes;
        let (c, u) = (&mut self.client, &mut self.upstream);
        let client = poll_bye(cx, (&mut *u, &mut *c), &mut self.down, to_client);
        let upstream = poll_bye(cx, (c, u), &mut self.up, to_upstream);
        match (client, upstream) {
            (Poll::Ready(()), Poll::Ready(())) => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }

    /// Payload bytes from the client and from the upstream, and messages both ways.
    pub(super) fn counts(&self) -> (u64, u64, u64) {
        (
            self.up.scan.payload_bytes,
            self.down.scan.payload_bytes,
            self.up.scan.messages + self.down.scan.messages,
        )
    }
}
