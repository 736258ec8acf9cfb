"""Finished traces → batches of spans for the exporter, from a thread of their own.

What the SDK's BatchSpanProcessor does for us, at a fraction of its cost on the
request path: ending a request's trace is one bounded append of the trace itself
(its version took a lock-free path too but checked the pid, the sampled flag and its
self-metrics on every span), and the trace's spans are built here, in the export
thread, many at a time. A batch goes out when `batch_size` traces wait or every
`delay_s`, whichever comes first; past `max_queue` waiting traces, new ones are
dropped and counted (a slow collector must not grow memory). Shutdown exports what
waits, then stops, within `EXIT_EXPORT_S`: a collector that does not answer must not
hold the process past its orchestrator's grace (it would be killed mid-exit). A single
SDK span (`on_end`) counts as a trace of one.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Protocol

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from gateway.telemetry.otlp import EncodedTrace, OtlpHttpExporter, encode_span

log = logging.getLogger("gateway.telemetry")

# How long shutdown may export what waits (the drain and the ledger's flush come
# before it). The Helm chart and the compose file give 10 s beyond the drain; one
# export to a hung collector alone may take twice the exporter's 10 s timeout.
EXIT_EXPORT_S = 3.0


class SpanSource(EncodedTrace, Protocol):
    """A finished trace (telemetry/tracing.py RequestTrace): its spans, built on demand,
    as the SDK's objects or straight as OTLP bytes."""

    def spans(self) -> list[ReadableSpan]: ...


class _OneSpan:
    __slots__ = ("_span",)

    def __init__(self, span: ReadableSpan) -> None:
        self._span = span

    def spans(self) -> list[ReadableSpan]:
        return [self._span]

    @property
    def resource(self) -> Resource:
        return self._span.resource

    @property
    def scope(self) -> InstrumentationScope | None:
        return self._span.instrumentation_scope

    def encoded_spans(self) -> list[bytes]:
        return [encode_span(self._span)]


class SpanBatcher(SpanProcessor):
    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue: int = 2048,
        batch_size: int = 512,
        delay_s: float = 1.0,
    ) -> None:
        self._exporter = exporter
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._delay_s = delay_s
        self._queue: deque[SpanSource] = deque()
        self._wake = threading.Event()
        self._export_lock = threading.Lock()  # the worker and force_flush take turns
        self._stopping = False
        self._abandoned = False  # shutdown gave up waiting: export nothing more
        self._sending = 0  # traces in the batch being exported now
        self.dropped = 0  # traces refused because the queue was full
        self._worker = threading.Thread(target=self._run, name="gateway-span-export", daemon=True)
        self._worker.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self.add(_OneSpan(span))

    def add(self, trace: SpanSource) -> None:
        queue = self._queue
        if self._stopping or len(queue) >= self._max_queue:
            if not self.dropped:
                log.warning("the span queue is full: spans are dropped (a slow collector?)")
            self.dropped += 1
            return
        queue.append(trace)
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._delay_s)
            self._wake.clear()
            self._export_waiting()
        self._export_waiting()

    def _export_waiting(self) -> None:
        with self._export_lock:
            queue = self._queue
            while queue and not self._abandoned:
                batch = [queue.popleft() for _ in range(min(self._batch_size, len(queue)))]
                self._sending = len(batch)
                try:
                    self._export(batch)
                except Exception:  # a builder's or exporter's bug must not end the worker
                    log.exception("trace export raised")
                finally:
                    self._sending = 0

    def _export(self, batch: list[SpanSource]) -> None:
        exporter = self._exporter
        if isinstance(exporter, OtlpHttpExporter):  # ours: straight from the traces to bytes
            exporter.export_traces(batch)
        else:
            exporter.export([span for trace in batch for span in trace.spans()])

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self._export_waiting()
        return True

    def shutdown(self, timeout_s: float = EXIT_EXPORT_S) -> None:
        """Export what waits, for at most `timeout_s`; what is not out by then is
        dropped, counted in `dropped` and logged once (the export thread is a daemon:
        left behind, it does not hold the exit)."""
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        self._worker.join(timeout=timeout_s)
        if self._worker.is_alive():
            self._abandoned = True
            unsent = len(self._queue) + self._sending
            self.dropped += unsent
            log.warning(
                "span export did not finish at exit: the rest is dropped",
                extra={"fields": {"timeout_s": timeout_s, "traces_dropped": unsent}},
            )
        self._exporter.shutdown()  # ours also ends an export under way
