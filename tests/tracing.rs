//! W3C trace context and OTLP span export, end to end: the real `gatehouse run` binary, a
//! recording upstream, and a real OTLP/HTTP receiver (tests/otlp/receiver.py, decoding the
//! protobuf with the official `opentelemetry-proto` package from .venv-ci).

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::BufRead;
use std::path::PathBuf;

use serde_json::Value;
use support::*;

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// The receiver, killed when dropped.
struct Receiver {
    child: std::process::Child,
    port: u16,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start() -> Option<Receiver> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = root.join(".venv-ci/bin/python");
        let usable = std::process::Command::new(&python)
            .args([
                "-c",
                "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if !require_component(
            usable,
            "the OTLP receiver (opentelemetry-proto in .venv-ci)",
        ) {
            return None;
        }
        let mut child = std::process::Command::new(python)
            .arg(root.join("tests/otlp/receiver.py"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first
            .trim()
            .strip_prefix("listening ")
            .unwrap()
            .parse()
            .unwrap();
        Some(Receiver { child, port })
    }

    async fn spans(&self) -> Vec<Value> {
        let body = get(&format!("http://127.0.0.1:{}/spans", self.port), &[])
            .await
            .body;
        serde_json::from_str::<Vec<Value>>(&body).unwrap()
    }
}

fn traceparent_of(seen: &Seen) -> (String, String, String) {
    let value = seen.headers["traceparent"].to_str().unwrap();
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!((parts.len(), parts[0]), (4, "00"), "{value}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

#[tokio::test]
async fn spans_reach_a_real_otlp_receiver_and_the_upstream_continues_the_trace() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let upstream = Upstream::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[listen]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
# One thread, the current-thread scheduler: the batch exporter's own thread hands its
# sends to the runtime, and the flush at shutdown waits for them on that one thread.
[runtime]
worker_threads = 1
[trace]
trust_incoming = true
otlp_endpoint = "http://127.0.0.1:{port}/v1/traces"
service_name = "edge-test"
[[route]]
path = "/"
upstream = "{up}"
auth = "none"
"#,
            port = receiver.port,
            up = upstream.url()
        ),
    )
    .unwrap();
    let (proc, addr) = Proc::start(&config);

    // A trusted, valid parent: continued, with tracestate passed on.
    let parent = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    let continued = get(
        &format!("http://{addr}/continued?access_token=secret-in-query"),
        &[
            ("traceparent", &parent),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("baggage", "tenant=acme"),
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        ],
    )
    .await;
    assert_eq!(continued.status, 200);
    let seen = upstream.last();
    let (trace, ours, flags) = traceparent_of(&seen);
    assert_eq!((trace.as_str(), flags.as_str()), (PARENT_TRACE, "01"));
    assert_ne!(
        ours, PARENT_SPAN,
        "the upstream's parent is gatehouse's span"
    );
    assert_eq!(seen.headers["tracestate"], "congo=t61rcWkgMzE");
    assert_eq!(seen.headers["baggage"], "tenant=acme");
    assert_eq!(
        seen.headers["b3"], "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
        "a trusted hop's other trace fields pass"
    );

    // Malformed (uppercase hex): a new trace, and the client's bytes never go upstream.
    let bad = parent.to_uppercase();
    get(
        &format!("http://{addr}/fresh"),
        &[
            ("traceparent", &bad),
            ("tracestate", "a=b"),
            ("baggage", "role=admin"),
        ],
    )
    .await;
    let seen = upstream.last();
    let (fresh_trace, fresh_span, fresh_flags) = traceparent_of(&seen);
    assert_ne!(fresh_trace.to_uppercase(), PARENT_TRACE.to_uppercase());
    assert_eq!(
        fresh_flags, "01",
        "an exported trace started here is sampled"
    );
    assert!(seen.headers.get("tracestate").is_none());
    assert!(seen.headers.get("baggage").is_none());
    assert_eq!(seen.headers.get_all("traceparent").iter().count(), 1);

    let (code, output) = proc.terminate();
    assert_eq!(code, 0, "{output}");
    // The access lines name the traces.
    assert!(
        output.contains(&format!("\"trace_id\":\"{PARENT_TRACE}\"")),
        "{output}"
    );
    assert!(
        output.contains(&format!("\"trace_id\":\"{fresh_trace}\"")),
        "{output}"
    );

    // The drain flushed both server spans to the receiver.
    let spans = receiver.spans().await;
    let find = |trace: &str| {
        spans
            .iter()
            .find(|s| s["trace_id"] == trace)
            .unwrap_or_else(|| panic!("no span of trace {trace} in {spans:#?}"))
    };
    let span = find(PARENT_TRACE);
    assert_eq!(span["parent_span_id"], PARENT_SPAN);
    assert_eq!(span["span_id"], ours.as_str());
    assert_eq!(span["service"], "edge-test");
    assert_eq!(span["name"], "GET /");
    assert_eq!(span["kind"], 2, "SPAN_KIND_SERVER");
    assert_eq!(span["attributes"]["http.response.status_code"], 200);
    assert_eq!(span["attributes"]["http.request.method"], "GET");
    assert_eq!(span["attributes"]["url.path"], "/continued");
    let fresh = find(&fresh_trace);
    assert_eq!(fresh["parent_span_id"], "");
    assert_eq!(fresh["span_id"], fresh_span.as_str());
    assert!(
        !serde_json::to_string(&spans)
            .unwrap()
            .contains("secret-in-query"),
        "a query value reached the collector"
    );
}

#[tokio::test]
async fn by_default_an_incoming_parent_is_not_trusted_and_a_new_trace_is_not_sampled() {
    let upstream = Upstream::echo().await;
    let toml = format!(
        "[[route]]\npath = \"/\"\nupstream = \"{}\"\nauth = \"none\"\n",
        upstream.url()
    );
    let proxy = TestProxy::start(&toml).await;
    let parent = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    get(
        &proxy.url("/x"),
        &[
            ("traceparent", &parent),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("baggage", "role=admin"),
            ("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("uber-trace-id", "5af7183fb1d4cf5f:6bc2:0:1"),
            ("Correlation-Context", "role=admin"),
        ],
    )
    .await;
    let seen = upstream.last();
    let (trace, span, flags) = traceparent_of(&seen);
    assert_ne!(
        trace, PARENT_TRACE,
        "an untrusted caller chose the trace id"
    );
    assert_ne!(span, PARENT_SPAN);
    assert_eq!(
        flags, "00",
        "nothing records this trace, so it is not marked sampled"
    );
    assert!(seen.headers.get("tracestate").is_none());
    assert!(
        seen.headers.get("baggage").is_none(),
        "an untrusted caller's baggage reached the upstream"
    );
    for field in ["x-b3-traceid", "uber-trace-id", "correlation-context"] {
        assert!(
            seen.headers.get(field).is_none(),
            "an untrusted caller's {field} reached the upstream"
        );
    }
    // Every request gets one, also without a client header.
    get(&proxy.url("/y"), &[]).await;
    let (second, _, _) = traceparent_of(&upstream.last());
    assert_ne!(second, trace);
}

#[tokio::test]
async fn with_trusted_proxies_listed_a_peer_outside_them_cannot_continue_a_trace() {
    let upstream = Upstream::echo().await;
    let toml = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n\
         [trace]\ntrust_incoming = true\n\
         [[route]]\npath = \"/\"\nupstream = \"{}\"\nauth = \"none\"\n",
        upstream.url()
    );
    let proxy = TestProxy::start(&toml).await;
    let parent = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    get(&proxy.url("/x"), &[("traceparent", &parent)]).await;
    let (trace, _, _) = traceparent_of(&upstream.last());
    assert_ne!(
        trace, PARENT_TRACE,
        "a peer that is not a trusted proxy chose the trace id"
    );
}
