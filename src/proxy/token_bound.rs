//! A streamed response that ends with the credential that opened it.
//!
//! A WebSocket closes when its token expires or is revoked, or the key that verified it is
//! withdrawn (`websocket/relay.rs`, `auth/key_board.rs`). A long response on an
//! authenticated route must end too: SignalR falls back to Server-Sent
//! Events where WebSockets are blocked, and any event stream or feed is one request that
//! stays open. Without this, a client keeps what expiry or revocation took away by picking
//! that transport.
//!
//! Most responses are whole in their first frame, so nothing is set up until the body
//! waits on the upstream or goes on after a frame: only then are the timer and the
//! watches made, and an ordinary request pays a wrapper, no timer.
//!
//! When the end comes, the upstream body is dropped (its connection is closed, not pooled,
//! since its body was not read to the end) and the response fails. hyper then closes an
//! HTTP/1.1 connection without the last chunk and resets an HTTP/2 stream, so the client
//! sees a cut response, never one that looks complete.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Instant;

use crate::auth::claims::Claims;
use crate::auth::key_board::{KeyRef, KeyWatch};
use crate::body::{Body, BodyError};
use crate::proxy::service::{Proxy, Route};
use crate::websocket::relay::RevocationWatch;

/// Why a stream was cut: the `reason` of `gatehouse_stream_cuts_total` and the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Expired,
    Revoked,
    KeyWithdrawn,
}

impl Ending {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Ending::Expired => "token_expired",
            Ending::Revoked => "token_revoked",
            Ending::KeyWithdrawn => "key_withdrawn",
        }
    }
}

/// The stream's credential, and where to find what ends it. The deadline and the
/// revocation subscription are worked out only once the body waits.
pub(crate) struct Bounds {
    pub proxy: Arc<Proxy>,
    pub route: Arc<Route>,
    pub claims: Arc<Claims>,
    /// The key that verified a JWT: the stream ends once it is withdrawn too.
    pub key: Option<Arc<KeyRef>>,
    pub request_id: http::HeaderValue,
}

type Watch = Pin<Box<dyn Future<Output = Ending> + Send>>;

enum State {
    /// The body has not waited on the upstream yet.
    Unwatched(Bounds),
    /// The body waited once: the watch runs (in a `Mutex` only so the body is `Sync`; it
    /// is reached through `get_mut`, never locked).
    Watched(Mutex<Watch>, Bounds),
    Cut,
}

pub(crate) struct TokenBound {
    body: Option<Body>,
    state: State,
}

impl TokenBound {
    pub(crate) fn new(body: Body, bounds: Bounds) -> TokenBound {
        TokenBound {
            body: Some(body),
            state: State::Unwatched(bounds),
        }
    }

    /// Starts the watch, once; `Some` when it has already fired.
    fn start_watch(&mut self, cx: &mut Context<'_>) -> Option<Ending> {
        if !matches!(self.state, State::Unwatched(_)) {
            return None;
        }
        let State::Unwatched(bounds) = std::mem::replace(&mut self.state, State::Cut) else {
            return None;
        };
        let revocations = bounds.proxy.auth.revocations();
        let revocation = RevocationWatch::new(bounds.claims.clone(), revocations);
        let deadline = bounds.proxy.deadline(&bounds.route, &bounds.claims);
        let key = bounds.key.clone().map(|key| KeyWatch {
            board: bounds.proxy.key_board.clone(),
            key,
        });
        let watched: Watch = Box::pin(watch(deadline, Some(revocation), key));
        self.state = State::Watched(Mutex::new(watched), bounds);
        // Polled once now, so its timer and subscriptions wake this body.
        self.poll_watch(cx)
    }

    /// `Some` once the watch has fired: the body is dropped and the stream fails.
    fn poll_watch(&mut self, cx: &mut Context<'_>) -> Option<Ending> {
        let State::Watched(watch, _) = &mut self.state else {
            return None;
        };
        let watch = watch
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Poll::Ready(ending) = watch.as_mut().poll(cx) else {
            return None;
        };
        if let State::Watched(_, bounds) = std::mem::replace(&mut self.state, State::Cut) {
            let route = &bounds.route.labels.name;
            bounds.proxy.metrics.stream_cut(route, ending.reason());
            tracing::info!(
                target: "gatehouse::access",
                event = "stream_cut",
                request_id = bounds.request_id.to_str().unwrap_or("-"),
                route = %route,
                reason = ending.reason(),
                "a streamed response was cut: its token expired, was revoked or lost its key",
            );
        }
        self.body = None;
        Some(ending)
    }
}

async fn watch(
    deadline: Option<Instant>,
    mut revocation: Option<RevocationWatch>,
    key: Option<KeyWatch>,
) -> Ending {
    let expiry = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = expiry => Ending::Expired,
        () = RevocationWatch::revoked(&mut revocation) => Ending::Revoked,
        () = KeyWatch::withdrawn(&key) => Ending::KeyWithdrawn,
    }
}

impl http_body::Body for TokenBound {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(ending) = this.poll_watch(cx) {
            return Poll::Ready(Some(Err(BodyError::Cut(ending.reason()))));
        }
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        // Watched from the first time the body waits, or goes on after a frame: a stream
        // whose upstream always has data ready never waits, and must end all the same.
        let goes_on = match &polled {
            Poll::Pending => true,
            Poll::Ready(Some(Ok(_))) => !this.is_end_stream(),
            Poll::Ready(_) => false,
        };
        if goes_on {
            if let Some(ending) = this.start_watch(cx) {
                return Poll::Ready(Some(Err(BodyError::Cut(ending.reason()))));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|body| body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |body| body.size_hint())
    }
}
