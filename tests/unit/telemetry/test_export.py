"""The span batcher and the OTLP/HTTP exporter against a real collector stand-in on
127.0.0.1: batches by size and by time, a bounded queue, one kept-alive connection,
a collector that closes it or fails."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext, TraceFlags

from gateway.telemetry.batch import SpanBatcher
from gateway.telemetry.otlp import OtlpHttpExporter, encode_request


def span(number: int) -> ReadableSpan:
    context = SpanContext(1, number, is_remote=False, trace_flags=TraceFlags(1))
    return ReadableSpan(f"s{number}", context, attributes={"n": number})


@dataclass
class Collector:
    """What the stand-in received: each POST's body, and how many connections it saw."""

    bodies: list[bytes] = field(default_factory=list)
    connections: int = 0
    status: int = 200
    close_each: bool = False  # answer `Connection: close` (HTTP/1.1 lets a server say so)
    hang_up_each: bool = False  # close the connection after each answer without saying so


@contextmanager
def collector() -> Iterator[tuple[Collector, str]]:
    seen = Collector()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            seen.connections += 1

        def do_POST(self) -> None:
            seen.bodies.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(seen.status)
            self.send_header("content-length", "0")
            if seen.close_each:
                self.send_header("connection", "close")
            self.end_headers()
            if seen.hang_up_each:
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield seen, f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        server.server_close()


def test_batches_share_one_kept_alive_connection() -> None:
    with collector() as (seen, url):
        exporter = OtlpHttpExporter(url)
        for first in (1, 3, 5):
            batch = [span(first), span(first + 1)]
            assert exporter.export(batch) is SpanExportResult.SUCCESS
        exporter.shutdown()
    assert seen.connections == 1
    assert seen.bodies[1] == encode_request([span(3), span(4)])


def test_a_collector_that_closes_each_connection_still_gets_every_batch() -> None:
    with collector() as (seen, url):
        seen.close_each = True
        exporter = OtlpHttpExporter(url)
        results = [exporter.export([span(n)]) for n in range(1, 4)]
        exporter.shutdown()
    assert results == [SpanExportResult.SUCCESS] * 3
    assert len(seen.bodies) == 3
    assert seen.connections == 3


def test_a_kept_alive_connection_the_collector_dropped_is_replaced() -> None:
    """An idle timeout on the collector's side: the next batch goes on a new connection."""
    with collector() as (seen, url):
        seen.hang_up_each = True
        exporter = OtlpHttpExporter(url)
        results = [exporter.export([span(n)]) for n in range(1, 4)]
        exporter.shutdown()
    assert results == [SpanExportResult.SUCCESS] * 3
    assert seen.bodies == [encode_request([span(n)]) for n in range(1, 4)]


def test_no_collector_listening_is_a_failure_not_an_exception() -> None:
    with collector() as (_, url):
        pass  # the port is free again
    exporter = OtlpHttpExporter(url, timeout_s=2)
    assert exporter.export([span(1)]) is SpanExportResult.FAILURE
    exporter.shutdown()


def test_a_refusing_collector_is_a_failure(caplog) -> None:
    with collector() as (seen, url):
        seen.status = 500
        exporter = OtlpHttpExporter(url)
        assert exporter.export([span(1)]) is SpanExportResult.FAILURE
        assert exporter.export([span(2)]) is SpanExportResult.FAILURE
        seen.status = 200
        assert exporter.export([span(3)]) is SpanExportResult.SUCCESS
        exporter.shutdown()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("export failed" in m for m in messages) == 1  # once, not per batch
    assert any("works again" in m for m in messages)


class Recording(SpanExporter):
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.batches.append([s.name for s in spans])
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.closed = True


def wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_full_batch_goes_out_at_once_in_order() -> None:
    exporter = Recording()
    batcher = SpanBatcher(exporter, batch_size=3, delay_s=60)
    for n in range(1, 4):
        batcher.on_end(span(n))
    wait_for(lambda: exporter.batches)
    assert exporter.batches == [["s1", "s2", "s3"]]
    batcher.shutdown()


def test_a_part_batch_goes_out_after_the_delay() -> None:
    exporter = Recording()
    batcher = SpanBatcher(exporter, batch_size=100, delay_s=0.05)
    batcher.on_end(span(1))
    wait_for(lambda: exporter.batches)
    assert exporter.batches == [["s1"]]
    batcher.shutdown()


def test_past_the_bound_spans_are_dropped_and_counted() -> None:
    exporter = Recording()
    batcher = SpanBatcher(exporter, max_queue=2, batch_size=100, delay_s=60)
    for n in range(1, 6):
        batcher.on_end(span(n))
    assert batcher.dropped == 3
    batcher.shutdown()
    assert exporter.batches == [["s1", "s2"]]


def test_shutdown_exports_what_waits_then_refuses_more() -> None:
    exporter = Recording()
    batcher = SpanBatcher(exporter, batch_size=100, delay_s=60)
    batcher.on_end(span(1))
    batcher.on_end(span(2))
    batcher.shutdown()
    assert exporter.batches == [["s1", "s2"]]
    assert exporter.closed
    batcher.on_end(span(3))
    assert batcher.dropped == 1
    batcher.shutdown()  # twice is harmless


def test_force_flush_exports_now() -> None:
    exporter = Recording()
    batcher = SpanBatcher(exporter, batch_size=100, delay_s=60)
    batcher.on_end(span(1))
    assert batcher.force_flush()
    assert exporter.batches == [["s1"]]
    batcher.shutdown()


def test_an_exporter_that_raises_does_not_stop_the_batcher() -> None:
    class Raising(Recording):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            super().export(spans)
            if len(self.batches) == 1:
                raise RuntimeError("bug")
            return SpanExportResult.SUCCESS

    exporter = Raising()
    batcher = SpanBatcher(exporter, batch_size=1, delay_s=60)
    batcher.on_end(span(1))
    wait_for(lambda: exporter.batches)
    batcher.on_end(span(2))
    wait_for(lambda: len(exporter.batches) == 2)
    batcher.shutdown()


@contextmanager
def silent_collector() -> Iterator[str]:
    """A collector that accepts connections and reads requests but never answers."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(conn)  # kept open, never read from or written to

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1/traces"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_a_hung_collector_holds_shutdown_no_longer_than_its_bound(caplog) -> None:
    """At exit, a collector that never answers costs the bound, not the exporter's
    timeouts (10 s, twice): what is not out by then is dropped, counted, logged once."""
    with silent_collector() as url:
        batcher = SpanBatcher(OtlpHttpExporter(url), batch_size=1, delay_s=60)
        batcher.on_end(span(1))  # goes out at once, and hangs
        time.sleep(0.2)
        for number in (2, 3):
            batcher.on_end(span(number))
        started = time.monotonic()
        batcher.shutdown(timeout_s=0.5)
        took_s = time.monotonic() - started
    assert 0.4 < took_s < 2.0
    assert batcher.dropped == 3  # the one under way and the two waiting
    said = [r for r in caplog.records if "did not finish at exit" in r.getMessage()]
    assert len(said) == 1
    batcher._worker.join(timeout=2)  # the export under way was cut, not left to time out
    assert not batcher._worker.is_alive()


def test_the_exit_bound_is_a_few_seconds() -> None:
    """Within the 10 s the Helm chart and compose file give beyond the drain."""
    from gateway.telemetry.batch import EXIT_EXPORT_S

    assert 1.0 <= EXIT_EXPORT_S <= 5.0
