//! One access log line per request, written when the response body ends (so it carries
//! the bytes sent, also for a long SSE stream), on every path: success, refusal, error.
//!
//! The line is built only from redacted parts: the path's query has its sensitive values
//! replaced by the route's `Redactor`, and the caller appears as a subject claim, never a
//! token. Lines go to the `gatehouse::access` target at INFO.

/// What a request's access line and metrics are labelled with, and the redactor its
/// logged path goes through: a route's, the ticket desk's, or the fallback's (`-`).
pub(crate) struct Labels {
    pub name: std::sync::Arc<str>,
    /// Every credential name any route reads, plus `log.redact_params` (one list for all).
    pub redactor: crate::redact::Redactor,
    pub metrics: crate::metrics::RouteMetrics,
}

impl Labels {
    pub(crate) fn new(
        name: &str,
        redactor: crate::redact::Redactor,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        Self {
            name: std::sync::Arc::from(name),
            redactor,
            metrics: metrics.route(name),
        }
    }
}

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Response, Version};
use http_body_util::BodyExt;

use crate::body::Body;
use crate::redact::Redactor;

pub(crate) struct AccessLine {
    start: Instant,
    request_id: String,
    client: IpAddr,
    method: Method,
    version: Version,
    path: String,
    route: Arc<str>,
    pub subject: Option<String>,
    pub upstream_time: Option<Duration>,
    pub reason: Option<&'static str>,
    /// W3C trace id (32 hex digits) of the request's trace.
    pub trace_id: Option<String>,
}

impl AccessLine {
    pub(crate) fn begin<B>(
        request: &http::Request<B>,
        client: IpAddr,
        redactor: &Redactor,
        route: Arc<str>,
        request_id: &http::HeaderValue,
    ) -> Self {
        Self {
            start: Instant::now(),
            request_id: String::from_utf8_lossy(request_id.as_bytes()).into_owned(),
            client,
            method: request.method().clone(),
            version: request.version(),
            path: redactor.path_and_query_for_log(request.uri()),
            route,
            subject: None,
            upstream_time: None,
            reason: None,
            trace_id: None,
        }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Wraps the response body so the line is written once the body has been sent or dropped.
    pub(crate) fn finish(self, response: Response<Body>) -> Response<Body> {
        let mut pending = Pending {
            line: self,
            status: response.status().as_u16(),
            bytes: 0,
        };
        response.map(|body| {
            body.map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    pending.sent(data.len());
                }
                frame
            })
            .boxed()
        })
    }
}

struct Pending {
    line: AccessLine,
    status: u16,
    bytes: u64,
}

impl Pending {
    // A method, not a field update: the closure must own the whole `Pending` (and so drop
    // it, writing the line, when the body goes), not just copy its counter.
    fn sent(&mut self, len: usize) {
        self.bytes += len as u64;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let l = &self.line;
        tracing::info!(
            target: "gatehouse::access",
            request_id = %l.request_id,
            trace_id = l.trace_id.as_deref().unwrap_or("-"),
            client = %l.client,
            method = %l.method,
            path = %l.path,
            proto = ?l.version,
            route = %l.route,
            status = self.status,
            subject = l.subject.as_deref().unwrap_or("-"),
            reason = l.reason.unwrap_or("-"),
            upstream_ms = l.upstream_time.map_or(-1.0, |d| d.as_secs_f64() * 1e3),
            duration_ms = l.start.elapsed().as_secs_f64() * 1e3,
            bytes = self.bytes,
        );
    }
}
