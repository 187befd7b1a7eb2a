//! The idle HTTP/1.1 connections of one endpoint, and the response body that gives its
//! connection back.
//!
//! A connection is driven by the task of the request that holds it: the response future
//! polls the connection before itself, and the response body whenever it has nothing read
//! yet, so a request costs no task hop and no cross-task wake-up (nor a wake-up of its own
//! task, see [`conn_waker`](super::conn_waker)). An idle connection is driven by nobody
//! until a request is queued on it. hyper reads before it writes: whatever the upstream
//! sent while the connection sat (a FIN, or bytes no request asked for) fails it before a
//! byte of the request is written, hyper hands the request back unsent, and the exchange
//! takes the next idle connection, or a new one (`exchange.rs`).
//!
//! A connection goes back only after its response body was read to its end *and* hyper
//! is ready for the next request on it (the request body fully sent, the upstream did not
//! say `Connection: close`), and only when the request body was all sent before the answer
//! came ([`upload`](super::upload)). A body dropped half-read, an error, an early answer or
//! an exchange that is still writing closes the connection instead: no later request can
//! ever read what was meant for an earlier one, nor be read as the rest of one.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Empty, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::conn_waker::{taking, ConnWaker};
use super::connect::Stream;
use super::stall::StallClock;
use super::trailers::WithoutTrailers;
use super::upload::Upload;
use crate::body::BodyError;

/// The client's body, or none for another attempt of a request that had none.
pub(crate) type Sent = Either<Upload<ClientBody>, Empty<Bytes>>;
/// The client's body with the rules every upload is under.
pub(crate) type ClientBody = StallClock<Limited<WithoutTrailers<Incoming>>>;
pub(crate) type H1Conn = http1::Connection<TokioIo<Stream>, Sent>;

/// How many idle connections an endpoint keeps, and for how long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_idle: usize,
    pub(crate) idle_timeout: Duration,
}

/// An HTTP/1.1 connection and its request handle, owned by one exchange at a time.
pub(crate) struct Lease {
    pub(crate) sender: http1::SendRequest<Sent>,
    /// `None` once the connection has ended. Boxed: a lease moves several times per request
    /// (taken, into the exchange, into the body, parked) and the state is ~700 bytes.
    pub(crate) conn: Option<Box<H1Conn>>,
    waker: ConnWaker,
}

impl Lease {
    pub(crate) fn new(sender: http1::SendRequest<Sent>, conn: H1Conn) -> Self {
        Self {
            sender,
            conn: Some(Box::new(conn)),
            waker: ConnWaker::new(),
        }
    }

    /// Polls the connection (reads, writes) for `cx`'s task; forgets it once it has ended.
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(conn) = self.conn.as_mut() {
            let mut cx = Context::from_waker(self.waker.on_behalf_of(cx));
            if Pin::new(conn).poll(&mut cx).is_ready() {
                self.conn = None;
            }
        }
    }

    /// Whether a new request may be written now: open, idle and keep-alive.
    fn reusable(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop()));
        self.ready()
    }

    /// [`Lease::reusable`] as of the last time the connection was driven. hyper asks for
    /// the next request only once the last exchange is over on both sides and the upstream
    /// kept the connection open, so this never says yes too early; what the upstream sent
    /// since is found when the connection is taken again ([`Idle::take`]).
    fn ready(&self) -> bool {
        self.conn.is_some() && self.sender.is_ready()
    }
}

struct Parked {
    lease: Lease,
    since: Instant,
}

/// One endpoint's idle HTTP/1.1 connections, newest last.
#[derive(Default)]
pub(crate) struct Idle {
    parked: Mutex<VecDeque<Parked>>,
}

impl Idle {
    /// The newest idle connection, unless it has been idle too long (then every one has,
    /// and all are closed). Not polled here: the first poll of the exchange finds out
    /// whether the upstream closed it meanwhile (see the module comment).
    pub(crate) fn take(&self, limits: Limits) -> Option<Lease> {
        loop {
            let parked = self.lock().pop_back()?;
            if parked.since.elapsed() >= limits.idle_timeout {
                // The newest is too old, so every other one is too.
                self.lock().clear();
                return None;
            }
            if parked.lease.ready() {
                return Some(parked.lease);
            }
        }
    }

    /// Parks a connection whose exchange has fully ended and that [`Lease::reusable`] found
    /// ready for another request, if the endpoint has room; otherwise it is closed.
    fn give_back(&self, lease: Lease, limits: Limits) {
        if limits.max_idle == 0 {
            return;
        }
        lease.waker.park();
        let mut parked = self.lock();
        if parked.len() >= limits.max_idle {
            parked.pop_front();
        }
        parked.push_back(Parked {
            lease,
            since: Instant::now(),
        });
    }

    /// Closes connections idle for `idle_timeout` and those the upstream has closed.
    pub(crate) fn sweep(&self, limits: Limits) {
        let mut parked = self.lock();
        parked.retain_mut(|p| p.since.elapsed() < limits.idle_timeout && p.lease.reusable());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Parked>> {
        // A panic while holding the list leaves it consistent (a VecDeque of owned values).
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A response body that drives its connection and, once read to the end, parks it in
/// `home`; with no `home` (the answer came before the upload ended, or switched protocols
/// unasked) it closes it.
pub(crate) struct PooledBody {
    body: Incoming,
    lease: Option<Lease>,
    home: Option<Arc<Idle>>,
    limits: Limits,
    done: bool,
}

impl PooledBody {
    pub(crate) fn new(
        body: Incoming,
        lease: Lease,
        home: Option<Arc<Idle>>,
        limits: Limits,
    ) -> Self {
        let done = body.is_end_stream();
        Self {
            body,
            lease: Some(lease),
            home,
            limits,
            done,
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        // What the connection has read already needs no drive: most responses are whole
        // in the read that brought their head.
        let mut polled = taking(cx, |cx| Pin::new(&mut this.body).poll_frame(cx));
        if polled.is_pending() {
            if let Some(lease) = this.lease.as_mut() {
                lease.drive(cx);
                polled = taking(cx, |cx| Pin::new(&mut this.body).poll_frame(cx));
            }
        }
        match &polled {
            Poll::Ready(None) => this.done = true,
            Poll::Ready(Some(Ok(_))) => this.done = this.body.is_end_stream(),
            // A failed body leaves the connection in an unknown state: close it.
            Poll::Ready(Some(Err(_))) => this.lease = None,
            Poll::Pending => {}
        }
        polled.map_err(BodyError::Upstream)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        match self.lease.take() {
            Some(lease) if self.done || self.body.is_end_stream() => {
                finish(lease, self.home.take(), self.limits)
            }
            // Dropped half-read: the rest of the body is still on the wire.
            _ => {}
        }
    }
}

/// Parks a connection whose response was read to its end, when it has a `home`. An
/// upstream may answer before the request body is in and still read it: the upload then
/// goes on in a task of its own, bounded by the body's stall clock and size limit, so the
/// upstream gets the whole body rather than a cut one; the connection is closed after it.
fn finish(mut lease: Lease, home: Option<Arc<Idle>>, limits: Limits) {
    if lease.ready() || lease.reusable() {
        if let Some(home) = home {
            home.give_back(lease, limits);
        }
        return;
    }
    if lease.conn.is_none() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let ready = std::future::poll_fn(|cx| {
            lease.drive(cx);
            if lease.conn.is_none() {
                return Poll::Ready(false);
            }
            lease.sender.poll_ready(cx).map(|r| r.is_ok())
        })
        .await;
        if let Some(home) = home.filter(|_| ready && lease.reusable()) {
            home.give_back(lease, limits);
        }
    });
}
