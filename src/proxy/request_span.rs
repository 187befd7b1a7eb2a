//! One server span per request: the trace context the upstream and the access line see,
//! and, when spans are exported, the span itself with the OpenTelemetry HTTP attributes.
//!
//! Attributes are the same bounded, redacted values the metrics use (method from a fixed
//! list, route path, status code, reason code) plus the canonical path without its query,
//! so no token can reach a collector.

use http::{HeaderMap, Method, StatusCode};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, Span};

use super::trace_context::{Drawn, TraceContext};
use crate::metrics::method_label;

/// What every request needs to take part in a trace; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct RequestTracer {
    tracer: Option<SdkTracer>,
    trust_incoming: bool,
}

pub(crate) struct RequestSpan {
    pub(crate) context: TraceContext,
    /// Boxed: an SDK span is ~280 bytes, held across every request's await (and so moved
    /// with its future) even when no span is exported, which is the usual case.
    span: Option<Box<Span>>,
}

/// Where the request is, for the span's name and attributes.
pub(crate) struct Target<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) route: &'a str,
}

impl RequestTracer {
    pub(crate) fn new(tracer: Option<SdkTracer>, trust_incoming: bool) -> Self {
        Self {
            tracer,
            trust_incoming,
        }
    }

    /// `trusted_hop`: the request came from a peer the operator trusts to name a parent
    /// (in `listen.trusted_proxies`, or any peer when that list is empty).
    pub(crate) fn start(
        &self,
        headers: &HeaderMap,
        target: &Target<'_>,
        (trusted_hop, drawn): (bool, &Drawn),
    ) -> RequestSpan {
        let exporting = self.tracer.is_some();
        let trusted = self.trust_incoming && trusted_hop;
        let mut context = TraceContext::for_request(headers, trusted, exporting, drawn);
        let Some(tracer) = &self.tracer else {
            return RequestSpan {
                context,
                span: None,
            };
        };
        let method = method_label(target.method);
        let span = tracer
            .span_builder(format!("{method} {}", target.route))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method),
                KeyValue::new("http.route", target.route.to_string()),
                KeyValue::new("url.path", target.path.to_string()),
            ])
            .start_with_context(tracer, &parent(&context));
        // The SDK picks the ids of a span it records; the upstream must see those.
        let ids = span.span_context();
        context.trace_id = ids.trace_id().to_bytes();
        context.span_id = ids.span_id().to_bytes();
        context.sampled = ids.is_sampled();
        RequestSpan {
            context,
            span: Some(Box::new(span)),
        }
    }
}

impl RequestSpan {
    /// Ends the span with the answer: 5xx is an error (ours or the upstream's), 4xx is the
    /// caller's and leaves the status unset, per the HTTP semantic conventions for servers.
    pub(crate) fn end(self, status: StatusCode, reason: Option<&'static str>) {
        let Some(mut span) = self.span else {
            return;
        };
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if let Some(reason) = reason {
            span.set_attribute(KeyValue::new("gatehouse.reason", reason));
        }
        if status.is_server_error() {
            span.set_status(Status::error(reason.unwrap_or("server error")));
        }
        span.end();
    }
}

/// The trusted caller's span as a remote parent; none for a trace started here.
fn parent(context: &TraceContext) -> Context {
    let Some(parent_id) = context.parent_id else {
        return Context::new();
    };
    let state = context
        .tracestate
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let flags = if context.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_bytes(context.trace_id),
        SpanId::from_bytes(parent_id),
        flags,
        true,
        state,
    ))
}
