"""One request's spans driven the way the pipeline drives them: `Tries` reports each
attempt, the record point finishes the trace, the middleware ends it."""

from __future__ import annotations

import time

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.context import Outcome, RequestContext
from gateway.policy.compiled import Deployment
from gateway.providers.base import UpstreamFailure
from gateway.routing.tries import Tries
from gateway.telemetry.current import CURRENT_TRACE, add_trace_headers, attempt_observer
from gateway.telemetry.tracing import Tracing
from gateway.usage.usage import Usage

A = Deployment("a", "model-a", 1.0, 1)
B = Deployment("b", "model-b", 1.0, 2)
TYPES = {"a": "openai", "b": "azure"}


def tracing() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Tracing(SimpleSpanProcessor(exporter), TYPES.get, lambda: 9), exporter


def begin(t: Tracing, traceparent: str | None = None):
    headers = [] if traceparent is None else [(b"traceparent", traceparent.encode())]
    return t.begin("POST", "/v1/chat/completions", headers)


def test_attempts_become_client_spans_and_the_answer_ends_at_the_record_point():
    t, exporter = tracing()
    trace = begin(t)
    ctx = RequestContext(request_id="req_1", endpoint="completions", model="fast", is_stream=True)
    token = CURRENT_TRACE.set(trace)
    try:
        tries = Tries(attempt_observer(ctx))
        tries.started(A)
        headers: dict[str, str] = {}
        add_trace_headers(headers)
        tries.failed(UpstreamFailure("x", status=502))
        tries.started(B)
        tries.answered()
        assert exporter.get_finished_spans() == ()  # spans go out when the trace ends
        ctx.usage = Usage(3, 5)
        answered_before_record = time.time_ns()
        t.record(ctx)
    finally:
        CURRENT_TRACE.reset(token)
    trace.end(failed=False)
    failed, answered, server = exporter.get_finished_spans()
    assert failed.name == "text_completion model-a"
    assert failed.attributes["gen_ai.provider.name"] == "openai"
    assert failed.attributes["error.type"] == "502"
    assert failed.attributes["gateway.upstream.status_code"] == 502
    # Flags: sampled, and (W3C trace context level 2) a random trace id: 0x03.
    assert headers["traceparent"] == (
        f"00-{failed.context.trace_id:032x}-{failed.context.span_id:016x}"
        f"-{int(failed.context.trace_flags):02x}"
    )
    assert int(failed.context.trace_flags) & 1
    assert answered.attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert answered.attributes["gateway.attempt.number"] == 2
    assert answered.attributes["gen_ai.usage.output_tokens"] == 5
    assert answered.status.status_code is StatusCode.UNSET
    # The stream's attempt lasted until the stream ended (the record point), the failed
    # one ended when it failed.
    assert answered.end_time >= answered_before_record > failed.end_time
    assert server.kind is SpanKind.SERVER
    assert server.name == "text_completion fast"
    assert server.attributes["gateway.policy.version"] == 9


def test_an_attempt_cut_by_the_request_ending_is_closed_as_cancelled():
    """A client that hung up mid-attempt leaves no span open."""
    t, exporter = tracing()
    trace = begin(t)
    ctx = RequestContext(request_id="req_1", endpoint="chat", model="fast")
    trace.observing(ctx).started(A)
    ctx.end(499, Outcome.CLIENT_DISCONNECTED)
    trace.finish(ctx)
    trace.end(failed=False)
    attempt, server = exporter.get_finished_spans()
    assert attempt.attributes["error.type"] == "cancelled"
    assert attempt.status.status_code is StatusCode.ERROR
    assert server.attributes["error.type"] == "client_disconnected"


def test_a_gateway_fault_marks_the_server_span_as_an_error():
    t, exporter = tracing()
    trace = begin(t)
    ctx = RequestContext(request_id="req_1", endpoint="chat")
    ctx.end(500, Outcome.GATEWAY_ERROR, "internal_error")
    trace.finish(ctx)
    trace.end(failed=True)
    (server,) = exporter.get_finished_spans()
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes["error.type"] == "internal_error"


def test_an_unsampled_caller_gets_no_spans_but_its_trace_goes_on_upstream():
    """The caller decided not to sample (flags 00): nothing is recorded, and the upstream
    still sees the caller's trace with the same decision."""
    t, exporter = tracing()
    trace = begin(t, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
    ctx = RequestContext(request_id="req_1", endpoint="chat")
    trace.observing(ctx).started(A)
    headers: dict[str, str] = {}
    trace.add_headers(headers)
    trace.answered()
    trace.finish(ctx)
    trace.end(failed=False)
    assert exporter.get_finished_spans() == ()
    assert headers["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert headers["traceparent"].endswith("-00")
    assert trace.trace_id == "0af7651916cd43dd8448eb211c80319c"


def test_without_a_current_trace_nothing_is_added_or_observed():
    headers: dict[str, str] = {}
    add_trace_headers(headers)
    assert headers == {}
    assert attempt_observer(RequestContext(request_id="r", endpoint="chat")) is None
    t, exporter = tracing()
    t.record(RequestContext(request_id="r", endpoint="chat"))  # no trace: nothing happens
    assert exporter.get_finished_spans() == ()


def test_an_unsampled_new_trace_records_nothing_but_still_propagates():
    """GATEWAY_TRACE_SAMPLE_RATIO=0: no span is recorded or exported; the upstream still
    gets a traceparent saying "not sampled"."""
    exporter = InMemorySpanExporter()
    t = Tracing(SimpleSpanProcessor(exporter), TYPES.get, lambda: 1, sample_ratio=0.0)
    trace = begin(t)
    ctx = RequestContext(request_id="req_1", endpoint="chat")
    trace.observing(ctx).started(A)
    headers: dict[str, str] = {}
    trace.add_headers(headers)
    trace.answered()
    trace.finish(ctx)
    trace.end(failed=False)
    t.flush()
    assert exporter.get_finished_spans() == ()
    assert int(headers["traceparent"][-2:], 16) & 1 == 0
    t.close()


PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OTHER = "00-9af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_one_traceparent_is_continued_two_start_a_new_trace():
    """Header lines of one name are one comma-joined value (RFC 9110): two traceparents,
    as two lines or one, are no valid one, and start a new trace (W3C's test suite)."""
    t, _ = tracing()
    assert begin(t, PARENT).trace_id_value == int(PARENT[3:35], 16)
    two_lines = [(b"traceparent", PARENT.encode()), (b"traceparent", OTHER.encode())]
    one_line = [(b"traceparent", f"{PARENT},{OTHER}".encode())]
    for headers in (two_lines, one_line):
        trace = t.begin("POST", "/v1/chat/completions", headers)
        assert trace.trace_id_value not in (int(PARENT[3:35], 16), int(OTHER[3:35], 16))
