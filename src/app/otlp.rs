//! Span export over OTLP/HTTP (protobuf) when `[trace] otlp_endpoint` is set.
//!
//! The opentelemetry SDK batches spans on its own thread and hands each batch to an
//! [`HttpClient`]; ours is the pooled hyper client gatehouse already uses, run on the
//! gatehouse runtime (the batch thread only waits for the task), so the exporter brings no
//! second HTTP stack and no gRPC.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::config::trace::{OtlpConfig, TraceConfig};
use crate::http_client::{self, Pooled};

/// A collector's answer is a small protobuf status; anything bigger is not one.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The provider `[trace]` asks for: none without an `otlp_endpoint`.
pub(crate) fn for_config(config: &TraceConfig) -> Result<Option<SdkTracerProvider>, String> {
    config.otlp.as_ref().map(provider).transpose()
}

/// The tracer the request path records its spans with.
pub(crate) fn tracer(provider: &SdkTracerProvider) -> SdkTracer {
    provider.tracer("gatehouse")
}

/// Builds the tracer provider; call inside the runtime that will carry the exports.
pub(crate) fn provider(config: &OtlpConfig) -> Result<SdkTracerProvider, String> {
    let client = Exporter {
        client: http_client::build(Duration::from_secs(5), None)?,
        runtime: tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?,
        timeout: config.timeout,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.endpoint.to_string())
        .with_timeout(config.timeout)
        .build()
        .map_err(|e| format!("trace.otlp_endpoint: {e}"))?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Sends what is batched and stops the export thread. Blocking, so it runs off the runtime,
/// which stays free to carry the last export.
pub(crate) async fn shutdown(provider: SdkTracerProvider) {
    let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    if let Ok(Err(e)) = done {
        tracing::warn!(error = %e, "span export did not finish cleanly");
    }
}

struct Exporter {
    client: Pooled<Full<Bytes>>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exporter")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl HttpClient for Exporter {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (client, timeout) = (self.client.clone(), self.timeout);
        let exchange = async move {
            let response = client.request(request.map(Full::new)).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES).collect().await?;
            Ok::<_, HttpError>(Response::from_parts(parts, body.to_bytes()))
        };
        // The timer is made inside the task: the batch thread has no runtime of its own.
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(timeout, exchange).await });
        match task.await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_elapsed)) => Err("OTLP export timed out".into()),
            Err(e) => Err(Box::new(e)),
        }
    }
}
