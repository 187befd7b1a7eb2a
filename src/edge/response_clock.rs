//! A response body on its way to the client, and, on HTTP/2, its write clock
//! (`limits.write_timeout`).
//!
//! The body holds its request's [`InFlight`] until it ends or is dropped.
//!
//! On HTTP/1.1 a client that stops reading blocks the connection's writes, and the
//! connection's own write clock (`activity.rs`) drops it; no clock runs here.
//!
//! On HTTP/2 one stream can starve while the connection flows: the client grants it no
//! window. Whenever hyper owes such a body a poll (from the start, and after each frame it
//! took until it asks for the next), it is the client we are waiting for. If that lasts
//! `write_timeout`, the response is abandoned: the upstream body is dropped, which releases
//! its connection, the request stops counting as in flight, and a later poll fails the
//! stream (RST_STREAM). While the body waits on the upstream (a quiet SSE stream) no clock
//! runs: the route's timeouts and the upstream govern that.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::edge::activity::InFlight;

pub(crate) use crate::body::BoxError;

/// Why a response stream was failed by gatehouse.
#[derive(Debug, thiserror::Error)]
#[error("response abandoned: the client read nothing for write_timeout")]
pub(crate) struct Abandoned;

/// A response body that holds its request's [`InFlight`] and runs the write clock.
pub(crate) struct Guarded<B>(Inner<B>);

enum Inner<B> {
    /// HTTP/1.1, and any empty body: no clock, so nothing shared with a watch either.
    Plain(Slot<B>),
    Watched {
        shared: Arc<Shared<B>>,
        _watch: DropGuard,
    },
}

struct Shared<B> {
    slot: Mutex<Slot<B>>,
    base: Instant,
    /// When hyper last took a frame (or the response started), in ms since `base`, plus
    /// one; 0 while the body itself is waiting on the upstream.
    owed_since: AtomicU64,
}

struct Slot<B> {
    /// `None` once abandoned.
    body: Option<B>,
    in_flight: Option<InFlight>,
}

impl<B> Shared<B> {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn owed_since(&self) -> Option<Instant> {
        match self.owed_since.load(Ordering::Acquire) {
            0 => None,
            ms => Some(self.base + Duration::from_millis(ms - 1)),
        }
    }

    fn owe(&self) {
        self.owed_since
            .store(self.now_ms().saturating_add(1), Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot<B>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the upstream body and reports the stall; the drops happen outside the lock.
    fn abandon(&self) {
        let (body, in_flight) = {
            let mut slot = self.lock();
            (slot.body.take(), slot.in_flight.take())
        };
        if let Some(in_flight) = &in_flight {
            in_flight.stalled();
        }
        drop(body);
        drop(in_flight);
    }
}

impl<B> Guarded<B>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
{
    pub(crate) fn new(body: B, in_flight: InFlight, write_timeout: Duration) -> Self {
        // An empty body is never polled; it has nothing to wait for. A watch is a task and a
        // timer per response, so HTTP/1.1 does without (see the module comment).
        let watched = in_flight.is_http2() && !body.is_end_stream();
        let slot = Slot {
            body: Some(body),
            in_flight: Some(in_flight),
        };
        if !watched {
            return Self(Inner::Plain(slot));
        }
        let shared = Arc::new(Shared {
            slot: Mutex::new(slot),
            base: Instant::now(),
            owed_since: AtomicU64::new(1),
        });
        let stop = CancellationToken::new();
        tokio::spawn(watch(Arc::downgrade(&shared), write_timeout, stop.clone()));
        Self(Inner::Watched {
            shared,
            _watch: stop.drop_guard(),
        })
    }
}

impl<B> Slot<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    /// The body's next frame; its end (or failure) ends the request's time in flight.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(Some(Err(Abandoned.into())));
        };
        let polled = Pin::new(body).poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = &polled {
            if let Some(in_flight) = &self.in_flight {
                in_flight.finish();
            }
        }
        polled.map_err(|error| -> BoxError { Box::new(error) })
    }

    fn is_end_stream(&self) -> bool {
        let ended = self.body.as_ref().is_some_and(Body::is_end_stream);
        if ended {
            if let Some(in_flight) = &self.in_flight {
                in_flight.finish();
            }
        }
        ended
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(SizeHint::default, Body::size_hint)
    }
}

/// Abandons the response once hyper has owed it a poll for `timeout`.
async fn watch<B>(shared: Weak<Shared<B>>, timeout: Duration, stop: CancellationToken) {
    loop {
        let deadline = match shared.upgrade() {
            Some(s) => s.owed_since().unwrap_or_else(Instant::now) + timeout,
            None => return,
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => {}
        }
        let Some(s) = shared.upgrade() else { return };
        if s.owed_since()
            .is_some_and(|t| t + timeout <= Instant::now())
        {
            s.abandon();
            return;
        }
    }
}

impl<B> Body for Guarded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let shared = match &mut self.get_mut().0 {
            Inner::Plain(slot) => return slot.poll_frame(cx),
            Inner::Watched { shared, .. } => shared,
        };
        let polled = shared.lock().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => shared.owe(),
            Poll::Pending | Poll::Ready(None | Some(Err(_))) => {
                shared.owed_since.store(0, Ordering::Release)
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Plain(slot) => slot.is_end_stream(),
            Inner::Watched { shared, .. } => shared.lock().is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Plain(slot) => slot.size_hint(),
            Inner::Watched { shared, .. } => shared.lock().size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::BodyError;
    use crate::edge::activity::{clocks, Activity, Trouble};
    use http_body_util::{BodyExt, Empty, StreamBody};

    type Chunks =
        StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, BodyError>>>;

    fn endless() -> Chunks {
        use futures_util::StreamExt;
        StreamBody::new(
            futures_util::stream::repeat_with(|| Ok(Frame::data(Bytes::from_static(b"x")))).boxed(),
        )
    }

    fn quiet() -> Chunks {
        use futures_util::StreamExt;
        StreamBody::new(futures_util::stream::pending().boxed())
    }

    const WRITE: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn a_body_waiting_on_its_upstream_is_never_abandoned() {
        let activity = Activity::new(clocks(60, 10, 1));
        let mut body = Guarded::new(quiet(), activity.begin(http::Version::HTTP_11), WRITE);
        let first = tokio::time::timeout(Duration::from_millis(10), body.frame()).await;
        assert!(first.is_err(), "a quiet upstream yielded a frame");
        tokio::time::sleep(WRITE * 30).await;
        assert_eq!(activity.in_flight(), 1, "a quiet response was abandoned");
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_body_nobody_polls_after_a_frame_is_abandoned() {
        let activity = Activity::new(clocks(60, 10, 1));
        let mut body = Guarded::new(endless(), activity.begin(http::Version::HTTP_2), WRITE);
        assert!(body.frame().await.is_some_and(|f| f.is_ok()));
        tokio::time::sleep(WRITE / 2).await;
        assert_eq!(activity.in_flight(), 1, "abandoned before write_timeout");
        tokio::time::sleep(WRITE).await;
        assert_eq!(activity.in_flight(), 0);
        assert_eq!(activity.trouble(100).await, Trouble::Stalled);
        let next = body.frame().await;
        assert!(next.is_some_and(|f| f.is_err_and(|e| e.is::<Abandoned>())));
    }

    /// HTTP/1.1 leaves a client that stops reading to the connection's write clock, which
    /// sees the blocked socket (`activity.rs`); the body itself runs none.
    #[tokio::test(start_paused = true)]
    async fn an_http1_body_runs_no_clock_of_its_own() {
        let activity = Activity::new(clocks(60, 10, 1));
        let mut body = Guarded::new(endless(), activity.begin(http::Version::HTTP_11), WRITE);
        assert!(body.frame().await.is_some_and(|f| f.is_ok()));
        tokio::time::sleep(WRITE * 30).await;
        assert_eq!(activity.in_flight(), 1);
        assert!(body.frame().await.is_some_and(|f| f.is_ok()));
    }

    #[tokio::test(start_paused = true)]
    async fn only_an_http2_response_dropped_before_its_end_counts_as_a_reset() {
        let activity = Activity::new(clocks(60, 10, 1));
        let empty = Empty::<Bytes>::new().map_err(|never| -> BodyError { match never {} });
        let done = Guarded::new(empty, activity.begin(http::Version::HTTP_2), WRITE);
        assert!(done.is_end_stream());
        drop(done);
        let mut read = Guarded::new(endless(), activity.begin(http::Version::HTTP_2), WRITE);
        assert!(read.frame().await.is_some());
        let calm = tokio::time::timeout(Duration::from_millis(10), activity.trouble(0)).await;
        assert!(
            calm.is_err(),
            "a finished or running response counted as a reset"
        );
        drop(read);
        assert_eq!(activity.trouble(0).await, Trouble::TooManyResets);
    }
}
