//! Whether a request's body was all handed to its HTTP/1.1 upstream connection before the
//! answer came.
//!
//! An upstream that answers before reading the body it was sent (an early `401`, a
//! handler that ignores bodies) leaves the unread rest on the connection, and reads it as
//! the start of the next request. Were the connection reused, a client whose body ends in
//! `GET /admin HTTP/1.1\r\nX-Auth-Subject: root\r\nX-Ignore: ` would have the next
//! caller's request, cookies and identity headers appended to a request of its own making.
//! So a connection whose answer came first is closed once the answer ends, never parked
//! (`pool::PooledBody`), as Envoy does. The upload itself goes on while the answer
//! streams: an upstream may answer early and still read (a full-duplex stream).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};

/// A request body that records when it has been read to its end.
pub(crate) struct Upload<B> {
    inner: B,
    /// `None` for a body that was empty from the start: nothing to wait for, and the
    /// usual bodiless request allocates nothing.
    ended: Option<Arc<AtomicBool>>,
}

impl<B: Body> Upload<B> {
    pub(crate) fn new(inner: B) -> Self {
        let ended = (!inner.is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
        Self { inner, ended }
    }

    pub(crate) fn progress(&self) -> Progress {
        Progress(self.ended.clone())
    }

    fn mark_ended(&self) {
        if let Some(ended) = &self.ended {
            ended.store(true, Ordering::Release);
        }
    }
}

impl<B: Body + Unpin> Body for Upload<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        // hyper stops polling a body that says it has ended after a frame.
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => false,
        };
        if ended {
            this.mark_ended();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How far an [`Upload`] has got, kept by the exchange after hyper took the body.
pub(crate) struct Progress(Option<Arc<AtomicBool>>);

impl Progress {
    /// For a request that never had a body.
    pub(crate) fn none() -> Self {
        Self(None)
    }

    /// Whether the whole body has been handed over.
    pub(crate) fn complete(&self) -> bool {
        self.0.as_ref().is_none_or(|e| e.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full};

    #[tokio::test]
    async fn a_body_is_complete_once_read_to_its_end() {
        let mut upload = Upload::new(Full::new(Bytes::from_static(b"abc")));
        let progress = upload.progress();
        assert!(!progress.complete());
        let frame = upload.frame().await;
        assert!(frame.is_some_and(|f| f.is_ok()));
        assert!(progress.complete());
    }

    #[test]
    fn an_empty_body_is_complete_from_the_start() {
        let upload = Upload::new(Empty::<Bytes>::new());
        assert!(upload.progress().complete());
        assert!(Progress::none().complete());
    }
}
