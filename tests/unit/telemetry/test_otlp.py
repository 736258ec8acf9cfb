"""Our OTLP protobuf bytes decode to exactly what the official encoder builds."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
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


# The property test's one Tracing, and the provider type and policy version it reads
# (set per example).
_NOW: dict[str, Any] = {}
PATH = "/v1/chat/completions"


@settings(max_examples=120, deadline=None)
@given(
    caller=st.booleans(),
    state=st.sampled_from([b"", b"v=1", b"a=1,b=2"]),
    failed_first=st.lists(st.sampled_from([500, 429, None]), max_size=2),
    answered=st.booleans(),
    stream=st.booleans(),
    status=st.sampled_from([200, 400, 429, 502]),
    usage=st.none() | st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
    reasons=st.lists(st.text(max_size=6), max_size=2).map(tuple),
    ttft=st.none() | st.floats(0, 100, allow_nan=False),
    raised=st.booleans(),
    subject=st.sampled_from(["alice", "bob", ""]),
    version=st.sampled_from([None, 2, 3]),
    provider=st.sampled_from(["openai", "azure", None]),
)
def test_a_trace_encodes_itself_as_its_spans_would(
    caller, state, failed_first, answered, stream, status, usage, reasons, ttft, raised,
    subject, version, provider,
):  # fmt: skip
    """Our traces skip the SDK objects on the way to the wire (the export thread encodes
    them straight from what the request recorded): the same bytes as their
    ReadableSpans through the encoder that the official one is checked against. One
    Tracing for every example: the attribute blocks it remembers from earlier traces
    (an attempt's, a request head's) must still be exactly right."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor as Simple

    from gateway.auth.principal import Principal
    from gateway.context import Outcome, RequestContext
    from gateway.policy.compiled import Deployment
    from gateway.providers.base import UpstreamFailure
    from gateway.telemetry import attributes as attrs
    from gateway.telemetry.otlp import encode_traces
    from gateway.telemetry.tracing import Tracing
    from gateway.usage.usage import Usage

    if "tracing" not in _NOW:
        _NOW["tracing"] = Tracing(
            Simple(InMemorySpanExporter()),
            lambda name: _NOW["provider"],
            lambda: _NOW["version"],
        )
    tracing = _NOW["tracing"]
    _NOW.update(provider=provider, version=version)
    headers = []
    if caller:
        headers.append((b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
        if state:
            headers.append((b"tracestate", state))
    trace = tracing.begin("POST", PATH, headers)
    ctx = RequestContext(request_id="req_1", endpoint="chat", model="m", is_stream=stream)
    ctx.principal = Principal("team", subject, "client", frozenset(), "iss", 0.0)
    observer = trace.observing(ctx)
    for number, failure in enumerate(failed_first):
        observer.started(Deployment("p", f"model-{number}", 1.0, 1))
        timed_out = failure is None
        observer.failed(UpstreamFailure("x", status=failure, is_timeout=timed_out))
    observer.started(Deployment("p", "model-last", 1.0, 1))
    if answered:
        observer.answered()
        ctx.usage = None if usage is None else Usage(*usage)
        ctx.finish_reasons, ctx.first_byte_s = reasons, ttft
    ctx.end(status, Outcome.OK if status == 200 else Outcome.REFUSED, None)
    trace.finish(ctx)
    trace.end(failed=raised)
    spans = tracing.spans_of(trace)
    assert len(spans) == len(failed_first) + 2
    assert encode_traces([trace]) == encode_request(spans)  # byte for byte
    # ... and what the remembered blocks say is what this request's values say.
    server = spans[-1]
    fresh = attrs.request_attributes(ctx, version)
    assert dict(server.attributes) == {"http.request.method": "POST", "url.path": PATH, **fresh}
    for span in spans[:-1]:
        assert span.attributes["gen_ai.provider.name"] == attrs.provider_name(provider)
        assert span.attributes["gen_ai.request.stream"] is stream


def test_remembered_attributes_keep_their_types():
    """Equal values of other types (1 == True, (1,) == (True,)) never share an encoding."""
    cases = [
        {"k": 1}, {"k": True}, {"k": "1"}, {"k": (1,)}, {"k": (True,)}, {"k": ("1",)},
        {"k": 1.0}, {"k": False}, {"k": 0}, {"k": ()},
    ]  # fmt: skip
    for _ in range(2):  # the second round reads what the first remembered
        for attributes in cases:
            span = ReadableSpan("s", SpanContext(1, 2, is_remote=False), attributes=attributes)
            assert decoded(encode_request([span])) == encode_spans([span])
