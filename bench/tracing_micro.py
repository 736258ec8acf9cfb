"""CPU per traced request of tracing alone: the spans of one JSON request as the pipeline
drives them (begin, one attempt, traceparent out, record point, end), through the real
batch processor and OTLP encoder to a collector on 127.0.0.1 that answers 200.

    PYTHONPATH=. .venv/bin/python bench/tracing_micro.py [--requests 20000] [--repeat 5]

Prints the median over the repeats of this process's CPU (every thread: the batch
thread encodes and posts) per request; the collector (bench/otlp_sink.py) runs in its
own process. Then what the export thread does per trace without the POST: the spans'
facts and their OTLP bytes (`encode_traces` of finished traces, garbage collection off
so that keeping every trace of the run does not bill collections to it).
"""

from __future__ import annotations

import argparse
import gc
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace.export import SpanExportResult

from gateway.auth.principal import Principal
from gateway.context import Outcome, RequestContext
from gateway.policy.compiled import Deployment
from gateway.routing.tries import Tries
from gateway.telemetry.attributes import traces_url
from gateway.telemetry.batch import SpanBatcher
from gateway.telemetry.current import CURRENT_TRACE, add_trace_headers, attempt_observer
from gateway.telemetry.otlp import EncodedTrace, OtlpHttpExporter, encode_traces
from gateway.telemetry.tracing import Tracing
from gateway.usage.usage import Usage

DEPLOYMENT = Deployment("upstream", "bench-upstream-model", 1.0, 1)
PRINCIPAL = Principal(
    team="bench",
    subject="svc-bench",
    client_id="c-bench",
    scopes=frozenset({"gateway:invoke"}),
    issuer="http://127.0.0.1",
    expires_at=time.time() + 3600,
)
SINK = Path(__file__).resolve().parent / "otlp_sink.py"


def one_request(tracing: Tracing) -> None:
    trace = tracing.begin("POST", "/v1/chat/completions", [(b"content-type", b"x")])
    token = CURRENT_TRACE.set(trace)
    try:
        ctx = RequestContext(request_id="req_0123456789abcdef", endpoint="chat")
        ctx.model, ctx.principal = "bench-model", PRINCIPAL
        tries = Tries(attempt_observer(ctx))
        tries.started(DEPLOYMENT)
        headers: dict[str, str] = {}
        add_trace_headers(headers)
        tries.answered()
        ctx.deployment, ctx.attempts = DEPLOYMENT, 1
        ctx.usage, ctx.response_model, ctx.finish_reasons = Usage(40, 12), "m", ("stop",)
        ctx.end(200, Outcome.OK)
        tracing.record(ctx)
    finally:
        CURRENT_TRACE.reset(token)
    trace.end(False)


def measure(requests: int, endpoint: str) -> float:
    # The queue holds every span of the run: the default bound would drop the surplus
    # (this loop ends spans faster than a server does) and hide their encoding.
    exporter = OtlpHttpExporter(traces_url(endpoint))
    tracing = Tracing(SpanBatcher(exporter, max_queue=10**6), lambda _: "openai", lambda: 3)
    started = time.process_time()
    for _ in range(requests):
        one_request(tracing)
    tracing.close()  # everything encoded and posted
    return (time.process_time() - started) / requests * 1e6


class _Keeping(OtlpHttpExporter):
    """An exporter that keeps the finished traces instead of sending them."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9/v1/traces")
        self.traces: list[EncodedTrace] = []

    def export_traces(self, traces: Sequence[EncodedTrace]) -> SpanExportResult:
        self.traces.extend(traces)
        return SpanExportResult.SUCCESS


def measure_encoding(requests: int, repeat: int) -> list[float]:
    keeping = _Keeping()
    tracing = Tracing(SpanBatcher(keeping, max_queue=10**6), lambda _: "openai", lambda: 3)
    for _ in range(requests):
        one_request(tracing)
    tracing.close()  # every trace handed to the exporter
    runs = []
    gc.disable()
    try:
        for _ in range(repeat):
            started = time.process_time()
            encode_traces(keeping.traces)
            runs.append((time.process_time() - started) / requests * 1e6)
    finally:
        gc.enable()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = subprocess.Popen([sys.executable, str(SINK), str(port)])  # its CPU is not ours
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        measure(2000, endpoint)  # warm up
        runs = [measure(args.requests, endpoint) for _ in range(args.repeat)]
    finally:
        sink.terminate()
    shown = ", ".join(f"{run:.1f}" for run in runs)
    print(f"traced request: {statistics.median(runs):.1f} µs CPU (median of {shown})")
    encoding = measure_encoding(args.requests, args.repeat)
    shown = ", ".join(f"{run:.2f}" for run in encoding)
    print(f"export work per trace, no POST: {statistics.median(encoding):.2f} µs (of {shown})")


if __name__ == "__main__":
    main()
