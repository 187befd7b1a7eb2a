//! One endpoint's HTTP/2 connections and the stream slots on them.
//!
//! Every client of a route shares these connections, so nothing one client does with its
//! streams may stop another's:
//!
//! - Stream slots: a connection carries at most `upstream_http2_max_streams` streams, and
//!   never more than the upstream's own `SETTINGS_MAX_CONCURRENT_STREAMS` (past which hyper
//!   would queue the request behind whoever holds the streams). A request that finds every
//!   connection full opens another one, up to `upstream_http2_max_connections`; past that
//!   it waits for a slot, within the route's `timeout`.
//! - A slot is held by a [`Slot`] shared by the request body and the response body, and
//!   is given back when both are gone: the stream is the upstream's to count until then.
//! - Flow control (`exchange.rs` sets the windows): a connection's receive window is as
//!   large as all its slots' stream windows together, so streams whose client stopped
//!   reading can hold at most their own windows, never the window another stream needs.

use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::client::conn::http2;
use tokio::sync::Notify;

use super::pool::Sent;

/// A request body on its way up an HTTP/2 connection, holding its stream's slot.
pub(crate) type H2Sent = Held<Sent>;

/// How many streams one connection carries and how many connections an endpoint opens.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caps {
    pub(crate) streams: usize,
    pub(crate) connections: usize,
}

/// A new connection: its request handle and the upstream's limits from its preface.
pub(crate) struct Opened {
    pub(crate) sender: http2::SendRequest<H2Sent>,
    pub(crate) max_streams: Option<u32>,
    pub(crate) max_header_list: Option<u32>,
}

struct Conn {
    id: u64,
    sender: http2::SendRequest<H2Sent>,
    cap: usize,
    streams: usize,
    max_header_list: Option<u32>,
    /// Since when no stream is open on it.
    idle_since: Option<Instant>,
}

#[derive(Default)]
struct State {
    conns: Vec<Conn>,
    /// Connections being opened: they count toward the cap already.
    opening: usize,
    next_id: u64,
}

/// An endpoint's HTTP/2 connections.
#[derive(Default)]
pub(crate) struct Multiplexed {
    state: Mutex<State>,
    /// A slot was given back, a connection opened, or an opening failed.
    changed: Notify,
}

/// A stream slot on one connection, taken for one request.
pub(crate) struct Lease {
    pub(crate) sender: http2::SendRequest<H2Sent>,
    pub(crate) slot: Arc<Slot>,
    /// The upstream's `SETTINGS_MAX_HEADER_LIST_SIZE`, if it set one.
    pub(crate) max_header_list: Option<u32>,
    /// The connection was opened for this request.
    pub(crate) fresh: bool,
}

/// One stream's place on its connection; given back when the last holder drops it.
pub(crate) struct Slot {
    home: Arc<Multiplexed>,
    conn: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut state = self.home.lock();
            if let Some(conn) = state.conns.iter_mut().find(|c| c.id == self.conn) {
                conn.streams = conn.streams.saturating_sub(1);
                if conn.streams == 0 {
                    conn.idle_since = Some(Instant::now());
                }
            }
        }
        self.home.changed.notify_waiters();
    }
}

/// What a look at the connections found.
enum Look {
    Taken(Lease),
    /// No slot free; an opening is counted for the caller, who must open a connection.
    Open,
    /// No slot free and the endpoint at its cap.
    Wait,
}

/// Gives back an opening's place in the cap if the opening is abandoned (the request
/// timed out or its client left) or failed.
struct Opening<'a> {
    home: &'a Multiplexed,
    armed: bool,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.home.lock().opening -= 1;
            self.home.changed.notify_waiters();
        }
    }
}

impl Multiplexed {
    /// A stream slot on a connection with room, on a new connection if none has room and
    /// the endpoint may open one, or the first slot given back.
    /// `open` makes a connection; its error is the caller's (`exchange`'s), passed through.
    pub(crate) async fn lease<F, Fut, E>(self: &Arc<Self>, caps: Caps, open: F) -> Result<Lease, E>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Opened, E>>,
    {
        loop {
            // Registered before looking, so a slot given back after the look wakes us.
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            match self.look(caps) {
                Look::Taken(lease) => return Ok(lease),
                Look::Open => return self.open_with(caps, &open).await,
                Look::Wait => changed.await,
            }
        }
    }

    fn look(self: &Arc<Self>, caps: Caps) -> Look {
        let mut state = self.lock();
        state.conns.retain(|c| !c.sender.is_closed());
        if let Some(lease) = self.take_slot(&mut state) {
            return Look::Taken(lease);
        }
        if state.conns.len() + state.opening < caps.connections.max(1) {
            state.opening += 1;
            return Look::Open;
        }
        Look::Wait
    }

    fn take_slot(self: &Arc<Self>, state: &mut State) -> Option<Lease> {
        let conn = state.conns.iter_mut().find(|c| c.streams < c.cap)?;
        conn.streams += 1;
        conn.idle_since = None;
        Some(Lease {
            sender: conn.sender.clone(),
            slot: Arc::new(Slot {
                home: self.clone(),
                conn: conn.id,
            }),
            max_header_list: conn.max_header_list,
            fresh: false,
        })
    }

    async fn open_with<F, Fut, E>(self: &Arc<Self>, caps: Caps, open: &F) -> Result<Lease, E>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Opened, E>>,
    {
        let mut opening = Opening {
            home: self,
            armed: true,
        };
        let opened = open().await?;
        let cap = match opened.max_streams {
            Some(theirs) => caps
                .streams
                .min(usize::try_from(theirs).unwrap_or(usize::MAX)),
            None => caps.streams,
        };
        let lease = {
            let mut state = self.lock();
            state.opening -= 1;
            opening.armed = false;
            let id = state.next_id;
            state.next_id += 1;
            state.conns.push(Conn {
                id,
                sender: opened.sender.clone(),
                // An upstream that allows no stream yet still gets one: hyper holds it until
                // the upstream allows it, within the route's timeout.
                cap: cap.max(1),
                streams: 1,
                max_header_list: opened.max_header_list,
                idle_since: None,
            });
            Lease {
                sender: opened.sender,
                slot: Arc::new(Slot {
                    home: self.clone(),
                    conn: id,
                }),
                max_header_list: opened.max_header_list,
                fresh: true,
            }
        };
        // Whoever waits may fit in the new connection's other slots.
        self.changed.notify_waiters();
        Ok(lease)
    }

    /// Forgets a connection that refused a request it never sent: it is closing.
    pub(crate) fn retire(&self, conn: &Slot) {
        self.lock().conns.retain(|c| c.id != conn.conn);
    }

    /// Closes connections with no stream for `idle_timeout` and those the upstream closed.
    /// hyper closes a connection once the last request handle to it is gone.
    pub(crate) fn sweep(&self, idle_timeout: Duration) {
        self.lock().conns.retain(|c| {
            let idle_too_long = c.idle_since.is_some_and(|t| t.elapsed() >= idle_timeout);
            !idle_too_long && !c.sender.is_closed()
        });
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the state leaves counts that are at worst off by one.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A body that holds its stream's slot until it is dropped.
pub(crate) struct Held<B> {
    body: B,
    slot: Arc<Slot>,
}

impl<B> Held<B> {
    pub(crate) fn new(body: B, slot: Arc<Slot>) -> Self {
        Self { body, slot }
    }

    /// The body without its slot (a request no connection took, to send elsewhere).
    pub(crate) fn into_inner(self) -> B {
        self.body
    }

    pub(crate) fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Held<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
