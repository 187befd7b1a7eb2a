//! A client's request trailers never go upstream.
//!
//! A trailer section is a second header block that arrives after the body, and none of
//! gatehouse's header rules reads it: it could carry `X-Auth-Subject`, `Authorization`, a
//! token cookie or `Host` past the stripping that `headers.rs` does on the first block. Over
//! HTTP/2 a connection-specific field in it also made hyper leave the upstream stream open,
//! with no end and no reset, until the route's `timeout`: a hundred such requests held
//! every stream of the connection all callers of the route share. HTTP/1.1 upstreams got
//! none before either (hyper sends only trailers that `Trailer` announces, and `Trailer` is
//! not forwarded). Browsers send no request trailers, and gRPC uses response trailers only.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};

/// A request body with its trailer frame dropped: the body ends where the trailers were.
pub(crate) struct WithoutTrailers<B>(B);

impl<B> WithoutTrailers<B> {
    pub(crate) fn new(body: B) -> Self {
        Self(body)
    }
}

impl<B: Body + Unpin> Body for WithoutTrailers<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let inner = &mut self.get_mut().0;
        match ready!(Pin::new(inner).poll_frame(cx)) {
            Some(Ok(frame)) if frame.is_trailers() => Poll::Ready(None),
            other => Poll::Ready(other),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue};
    use http_body_util::{BodyExt, StreamBody};
    use std::convert::Infallible;

    #[tokio::test]
    async fn the_data_goes_on_and_the_trailers_stay_behind() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-auth-subject", HeaderValue::from_static("root"));
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::data(Bytes::from_static(b"c"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = WithoutTrailers::new(StreamBody::new(futures_util::stream::iter(frames)));
        let Ok(collected) = body.collect().await;
        assert!(collected.trailers().is_none());
        assert_eq!(collected.to_bytes(), Bytes::from_static(b"abc"));
    }
}
