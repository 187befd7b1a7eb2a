//! `UpstreamError`: why forwarding failed; the proxy layer maps it to a response.

/// Why forwarding failed. Whose fault: the upstream's (502/504) or ours (500).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("upstream failed")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The route's `timeout` ran out before the response head; the cause names the endpoint.
    #[error("upstream did not answer in time")]
    Timeout(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("could not build the upstream request")]
    BadRequest(#[source] http::Error),
    /// The client's body crossed the route's `max_body_bytes`: the client's fault (413).
    /// `sent`: the request had gone upstream (a chunked body cut where it crossed), or not
    /// (a `Content-Length` over the limit, refused first).
    #[error("request body too large")]
    BodyTooLarge { sent: bool },
    /// The upstream's `101` chose a subprotocol the client did not offer (502).
    #[error("upstream chose a subprotocol the client did not offer")]
    BadSubprotocol,
    /// The client's body stopped arriving for `limits.body_stall_timeout`: its fault (408).
    #[error("request body stalled")]
    BodyStalled,
    /// The client's body broke off (it reset its stream, or closed mid-upload): its doing,
    /// not the upstream's (400, to a client that is usually gone).
    #[error("the client's request body broke off")]
    BodyBroken,
    /// The header list is larger than the HTTP/2 upstream accepts
    /// (`SETTINGS_MAX_HEADER_LIST_SIZE`): never sent, as the upstream would close the
    /// connection every other client's requests share (431).
    #[error("request header list larger than the upstream accepts")]
    HeadersTooLarge,
    /// A SignalR `id` this route did not seal, or whose endpoint is gone (404, as the hub).
    #[error("no connection with that id")]
    NoConnection,
    /// A negotiate answer that could not be sealed for affinity (502).
    #[error("negotiate answer could not be sealed")]
    Negotiate(#[source] super::negotiate::NegotiateError),
}

impl UpstreamError {
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Failed(_) => "failed",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::BadRequest(_) => "bad_request",
            UpstreamError::BodyTooLarge { .. } => "body_too_large",
            UpstreamError::BadSubprotocol => "bad_subprotocol",
            UpstreamError::BodyStalled => "body_stalled",
            UpstreamError::BodyBroken => "body_broken",
            UpstreamError::NoConnection => "no_connection",
            UpstreamError::HeadersTooLarge => "headers_too_large",
            UpstreamError::Negotiate(_) => "negotiate",
        }
    }

    /// Whether gatehouse had reached for the upstream (tried a connection, sent the request)
    /// when this happened, rather than refusing the request first: the access line's
    /// `upstream_ms` is `-1` ("not asked") only when it had not.
    pub fn reached_upstream(&self) -> bool {
        match self {
            UpstreamError::BadRequest(_) | UpstreamError::NoConnection => false,
            UpstreamError::BodyTooLarge { sent } => *sent,
            UpstreamError::Connect(_)
            | UpstreamError::Failed(_)
            | UpstreamError::Timeout(_)
            | UpstreamError::BadSubprotocol
            | UpstreamError::BodyStalled
            | UpstreamError::BodyBroken
            | UpstreamError::HeadersTooLarge
            | UpstreamError::Negotiate(_) => true,
        }
    }
}

/// A failure with the endpoint it happened at: the cause of `UpstreamError::Connect`,
/// `Failed` and `Timeout`, so the warning line can name the address (on a route with
/// several endpoints, the one that failed).
#[derive(Debug, thiserror::Error)]
#[error("at {authority}")]
pub(crate) struct AtEndpoint {
    pub(crate) authority: http::uri::Authority,
    #[source]
    pub(crate) error: Box<dyn std::error::Error + Send + Sync>,
}

/// The cause of a timeout: how long the route waits for a response head.
#[derive(Debug, thiserror::Error)]
#[error("no response head within the route's timeout ({})", humantime::format_duration(*.0))]
pub(crate) struct NoAnswerWithin(pub(crate) std::time::Duration);

impl AtEndpoint {
    pub(crate) fn boxed(
        authority: &http::uri::Authority,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Box<Self> {
        Box::new(AtEndpoint {
            authority: authority.clone(),
            error: Box::new(error),
        })
    }

    /// The endpoint and the failure's cause chain, when `error` is (or is caused by) one.
    pub(crate) fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a AtEndpoint> {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(at) = e.downcast_ref::<AtEndpoint>() {
                return Some(at);
            }
            cause = e.source();
        }
        None
    }
}
