"""Our OTLP protobuf bytes decode to exactly what the official encoder builds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace.span import TraceState

from gateway.telemetry.otlp import any_value, encode_request

SCALARS = (
    st.text(max_size=30)
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
)
VALUES = (
    SCALARS
    | st.lists(st.text(max_size=8), max_size=4).map(tuple)
    | st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4).map(tuple)
)
ATTRIBUTES = st.dictionaries(st.text(min_size=1, max_size=20), VALUES, max_size=8)


def spans_with(attributes: dict[str, object]) -> tuple:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc", "n": 3}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("scope-name", "1.2")
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "x"), ("other", "y")]),
    )
    parent = tracer.start_span("server", context=set_span_in_context(NonRecordingSpan(remote)),
                               kind=SpanKind.SERVER)  # fmt: skip
    parent.set_attributes(attributes)
    child = tracer.start_span(
        "client",
        context=set_span_in_context(parent),
        kind=SpanKind.CLIENT,
        links=[Link(remote, {"why": "retry"})],
    )
    child.add_event("moment", {"k": 1})
    child.set_status(Status(StatusCode.ERROR, "went wrong"))
    child.end()
    parent.end()
    root = tracer.start_span("alone")
    root.end()
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["client", "server", "alone"]
    return spans


def decoded(data: bytes) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    message.ParseFromString(data)
    return message


def test_our_encoding_equals_the_official_one_for_typical_spans():
    spans = spans_with({"gen_ai.operation.name": "chat", "gateway.attempts": 2,
                        "gen_ai.response.finish_reasons": ("stop",), "ok": True, "t": 0.25})  # fmt: skip
    assert decoded(encode_request(spans)) == encode_spans(spans)


@settings(max_examples=60, deadline=None)
@given(ATTRIBUTES)
def test_our_encoding_equals_the_official_one_for_any_attributes(found):
    spans = spans_with(found)
    assert decoded(encode_request(spans)) == encode_spans(spans)


def test_nothing_to_send_is_an_empty_request():
    assert encode_request([]) == b""


def test_a_value_the_conventions_do_not_allow_is_refused():
    try:
        any_value(object())
    except TypeError as error:
        assert "object" in str(error)
    else:
        raise AssertionError("no error")


def test_the_gateways_own_spans_encode_as_the_official_encoder_does():
    """The ReadableSpans our tracing builds (plain dict attributes) encode identically."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor as Simple

    from gateway.context import RequestContext
    from gateway.policy.compiled import Deployment
    from gateway.providers.base import UpstreamFailure
    from gateway.telemetry.tracing import Tracing

    exporter = InMemorySpanExporter()
    tracing = Tracing(Simple(exporter), lambda name: "openai", lambda: 2)
    trace = tracing.begin(
        "POST",
        "/v1/chat/completions",
        [(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
         (b"tracestate", b"v=1")],
    )  # fmt: skip
    ctx = RequestContext(request_id="req_1", endpoint="chat", model="m")
    trace.observing(ctx).started(Deployment("a", "model-a", 1.0, 1))
    trace.failed(UpstreamFailure("x", status=500))
    trace.started(Deployment("b", "model-b", 1.0, 1))
    trace.answered()
    trace.finish(ctx)
    trace.end(failed=False)
    spans = exporter.get_finished_spans()
    assert len(spans) == 3
    assert decoded(encode_request(spans)) == encode_spans(spans)
