"""Stand-in for the OpenTelemetry collector where no registry is reachable.

OTLP/HTTP protobuf on :4318/v1/traces, each span printed as one JSON line (name, ids,
attributes: what an operator reads from a collector's debug exporter); the spans
received per name as Prometheus text on :8889/metrics. Arguments (compose passes
`--config=...`) are printed and otherwise ignored.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

SCALARS = ("string_value", "int_value", "double_value", "bool_value")
received: dict[str, int] = {}
lock = threading.Lock()


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: scalar(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def scalar(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind in SCALARS:
        return getattr(value, kind)
    if kind == "array_value":
        return [scalar(item) for item in value.array_value.values]
    return str(value)


class Traces(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
            service = attributes(resource.resource.attributes).get("service.name")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    with lock:
                        received[span.name] = received.get(span.name, 0) + 1
                    line = {
                        "service": service,
                        "name": span.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent": span.parent_span_id.hex(),
                        "attributes": attributes(span.attributes),
                    }
                    print(json.dumps(line), flush=True)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        with lock:
            counts = list(received.items())
        lines = [f'otelcol_spans_received{{span_name="{name}"}} {n}\n' for name, n in counts]
        self.send_response(200)
        self.send_header("content-type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write("".join(lines).encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    print("stand-in collector, arguments:", sys.argv[1:], flush=True)
    metrics = ThreadingHTTPServer(("0.0.0.0", 8889), Metrics)
    threading.Thread(target=metrics.serve_forever, daemon=True).start()
    ThreadingHTTPServer(("0.0.0.0", 4318), Traces).serve_forever()


if __name__ == "__main__":
    main()
