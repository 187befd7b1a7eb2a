"""A real OTLP/HTTP traces receiver for tests/tracing.rs.

It serves POST /v1/traces as the OpenTelemetry protocol specifies for OTLP/HTTP with
protobuf bodies (Content-Type application/x-protobuf, optionally gzip), decodes each
ExportTraceServiceRequest with the official generated classes of the `opentelemetry-proto`
package, and answers with an ExportTraceServiceResponse. GET /spans returns every span
received so far as JSON (ids in lowercase hex, attributes as plain values, the resource's
service.name beside each span).

Usage: python receiver.py   -- prints "listening <port>" on stdout, then serves until killed.
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

SPANS: list[dict] = []
LOCK = threading.Lock()


def value(v) -> object:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attributes(kvs) -> dict:
    return {kv.key: value(kv.value) for kv in kvs}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_error(415 if self.path == "/v1/traces" else 404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except Exception:  # noqa: BLE001 - a bad body is the sender's error, answer 400
            self.send_error(400)
            return
        received = []
        for rs in request.resource_spans:
            resource = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    received.append(
                        {
                            "service": resource.get("service.name"),
                            "scope": ss.scope.name,
                            "name": span.name,
                            "kind": span.kind,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "status_code": span.status.code,
                            "attributes": attributes(span.attributes),
                        }
                    )
        with LOCK:
            SPANS.extend(received)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:
        if self.path != "/spans":
            self.send_error(404)
            return
        with LOCK:
            answer = json.dumps(SPANS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
