//! The upload clock (`limits.body_stall_timeout`): a request body on its way upstream that
//! sends nothing for this long, while the upstream connection is ready to take more, ends in
//! an error, which aborts the upstream request and releases its connection.
//!
//! The route's `timeout` bounds the wait for response headers, but an upstream may answer
//! before it has read the whole body (an early 200, a streaming endpoint); after that, a
//! client trickling its upload would hold the upstream connection with no clock running.
//! The clock runs only while hyper polls the body, so an upstream that does not read
//! (backpressure) never counts against the client.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The client sent no part of its body for `limits.body_stall_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled: the client sent nothing for body_stall_timeout")]
pub(crate) struct Stalled;

/// A body whose frames must keep coming while it is being read.
pub(crate) struct StallClock<B> {
    inner: B,
    limit: Duration,
    /// Armed at the first poll that finds nothing, reset by every frame.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> StallClock<B> {
    pub(crate) fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            deadline: None,
        }
    }
}

impl<B> Body for StallClock<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.deadline = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let limit = this.limit;
                let deadline = this.deadline.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(Instant::now() + limit))
                });
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Stalled)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use std::convert::Infallible;

    type Chunks =
        StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

    /// A body that sends one frame at each of `gaps` after the previous one.
    fn trickle(gaps: &'static [u64]) -> Chunks {
        let frames = futures_util::stream::unfold(0usize, move |i| async move {
            let gap = *gaps.get(i)?;
            tokio::time::sleep(Duration::from_secs(gap)).await;
            Some((Ok(Frame::data(Bytes::from_static(b"x"))), i + 1))
        });
        StreamBody::new(Box::pin(frames) as futures_util::stream::BoxStream<'static, _>)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_coming_is_never_cut() {
        let body = StallClock::new(trickle(&[4, 4, 4, 4]), Duration::from_secs(5));
        let bytes = body.collect().await.map(|c| c.to_bytes()).ok();
        assert_eq!(bytes.as_deref(), Some(&b"xxxx"[..]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_longer_than_the_limit_ends_the_body_with_stalled() {
        let body = StallClock::new(trickle(&[1, 6]), Duration::from_secs(5));
        let error = body.collect().await.err().map(|e| e.is::<Stalled>());
        assert_eq!(error, Some(true));
    }
}
