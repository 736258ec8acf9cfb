"""OpenTelemetry traces: one server span per inference request, one client span per
upstream attempt, exported over OTLP/HTTP (telemetry/batch.py, telemetry/otlp.py).

Imported only when GATEWAY_OTLP_ENDPOINT is set (telemetry/__init__.py), so a
gateway without it loads no SDK and builds no span. While a request runs, its trace
records only what it cannot learn later: ids, clock readings, which deployment each
attempt went to and how it failed, and (at the record point) the finished request
context. The spans themselves (`SpanContext`s, attribute maps, `ReadableSpan`s) are
built from those when the trace is exported, by the batcher's thread, many at a time:
building them on the event loop, one request at a time between everything else it
does, cost about twice as much CPU. Sampling follows OpenTelemetry's
ParentBased(TraceIdRatioBased). Built in each worker after the fork (REFERENCE.md
§3.4). No span carries prompt or completion text, a token or a key.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from enum import Enum
from typing import TypeVar

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from gateway.context import Outcome, RequestContext
from gateway.policy.compiled import Deployment
from gateway.providers.base import UpstreamFailure
from gateway.telemetry import attributes as attrs
from gateway.telemetry import names, otlp
from gateway.telemetry.attributes import Attributes, TraceParent
from gateway.telemetry.batch import SpanBatcher
from gateway.telemetry.current import CURRENT_TRACE
from gateway.telemetry.endpoint import Headers
from gateway.telemetry.otlp import OtlpHttpExporter, SpanFacts

SAMPLED = 0x01
_NO_STATE = TraceState()  # immutable: one for every trace without a caller's tracestate
_FLAGS = (TraceFlags(0), TraceFlags(SAMPLED))
_U64 = 0xFFFFFFFFFFFFFFFF
_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)
_K = TypeVar("_K")


class Tracing:
    """This process's span processor and what builds each request's trace.

    With our batcher the finished trace itself is queued and its spans are built in
    the export thread; any other SDK processor (the tests' in-memory exporter) gets
    the spans when the trace ends.
    """

    def __init__(
        self,
        processor: SpanProcessor | SpanBatcher,
        provider_type_of: Callable[[str], str | None],
        policy_version: Callable[[], int | None],
        sample_ratio: float = 1.0,
        server_of: Callable[[str], attrs.ServerAddress | None] | None = None,
    ) -> None:
        """`provider_type_of`, `server_of`: a provider's type and its address
        (telemetry/__init__.py), looked up by name as its attempts' spans are built."""
        self._processor = processor
        self._batcher = processor if isinstance(processor, SpanBatcher) else None
        self._policy_version = policy_version
        self._sample_below = attrs.sampling_bound(sample_ratio)
        self.blocks = Blocks(provider_type_of, server_of)
        # The SDK reads OTEL_RESOURCE_ATTRIBUTES; service.name follows OTel's precedence.
        self.resource = Resource.create({"service.name": attrs.service_name(os.environ)})
        self.scope = InstrumentationScope(names.INSTRUMENTATION_NAME)

    @classmethod
    def to_otlp(
        cls,
        endpoint: str,
        sample_ratio: float,
        provider_type_of: Callable[[str], str | None],
        policy_version: Callable[[], int | None],
        server_of: Callable[[str], attrs.ServerAddress | None] | None = None,
        headers: Headers = (),
    ) -> Tracing:
        """`headers`: sent with each export (OTEL_EXPORTER_OTLP_*HEADERS)."""
        exporter = OtlpHttpExporter(attrs.traces_url(endpoint), headers=headers)
        processor = SpanBatcher(exporter)
        return cls(processor, provider_type_of, policy_version, sample_ratio, server_of)

    def begin(self, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> RequestTrace:
        """Start the server span, continuing the caller's trace when it sent a valid
        `traceparent` (an invalid one starts a new trace)."""
        traceparent: bytes | None = None
        trace_states: list[str] = []
        for key, value in headers:
            if key == b"traceparent":
                # Lines of one header are one comma-joined value (RFC 9110 §5.3): two
                # traceparents are no valid one (W3C's suite: a new trace), however sent.
                traceparent = value if traceparent is None else traceparent + b"," + value
            elif key == b"tracestate":  # a list: its lines do combine
                trace_states.append(value.decode("latin-1"))
        parent = (
            None if traceparent is None else attrs.parse_traceparent(traceparent.decode("latin-1"))
        )
        if parent is None:  # a new trace: its id and the server span's in one draw
            ids = random.getrandbits(192)
            trace_id, span_id = (ids >> 64) or 1, (ids & _U64) or 1
            flags = SAMPLED if attrs.is_sampled_new(trace_id, self._sample_below) else 0
            return RequestTrace(self, trace_id, span_id, flags, None, _NO_STATE, method, path)
        state = TraceState.from_header(trace_states) if trace_states else _NO_STATE
        span_id = random.getrandbits(64) or 1
        return RequestTrace(
            self, parent.trace_id, span_id, parent.trace_flags, parent, state, method, path
        )

    def ended(self, trace: RequestTrace) -> None:
        """A sampled trace is complete: to the batcher as it is, or its spans to the
        SDK processor now."""
        if self._batcher is not None:
            self._batcher.add(trace)
            return
        for span in self.spans_of(trace):
            self._processor.on_end(span)

    def spans_of(self, trace: RequestTrace) -> list[ReadableSpan]:
        """A finished trace's spans as the SDK's objects."""
        return readable_spans(self, trace, span_facts(trace, self.blocks))

    def policy_version(self) -> int | None:
        return self._policy_version()

    def record(self, ctx: RequestContext) -> None:
        """A recorder (Services.recorders): the finished request onto its spans."""
        current = CURRENT_TRACE.get()
        if current is not None:
            current.finish(ctx)

    def flush(self) -> None:
        """Export what is queued now (blocking: call it off the event loop)."""
        self._processor.force_flush()

    def close(self) -> None:
        """Export what is still queued (for at most batch.EXIT_EXPORT_S), then stop."""
        self._processor.shutdown()


class AttemptEnd(Enum):
    """How an attempt's client span ended."""

    ANSWERED = "answered"
    FAILED = "failed"
    CUT = "cut"  # the request ended while it ran


class _Attempt:
    """One upstream attempt: what its client span is built from."""

    __slots__ = ("deployment", "end", "end_ns", "failure", "number", "span_id", "start_ns")

    def __init__(self, deployment: Deployment, number: int) -> None:
        self.deployment = deployment
        self.number = number
        self.span_id = random.getrandbits(64) or 1
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.end = AttemptEnd.CUT
        self.failure: UpstreamFailure | None = None


class RequestTrace:
    """One inference request's trace while it runs.

    The failover loop reports attempts as they start and end (routing/tries.py); a
    failed attempt's span ends at once, the answering one at the record point, so a
    stream's attempt span lasts until the stream has ended. The middleware ends the
    server span and hands the whole trace to `Tracing.ended`. Unsampled, nothing is
    kept, but the trace still goes on to the upstream.
    """

    __slots__ = (
        "_answered_ns",
        "_attempt",
        "_head",
        "_tracing",
        "attempts",
        "ctx",
        "end_ns",
        "flags",
        "is_sampled",
        "method",
        "parent",
        "path",
        "policy_version",
        "raised",
        "span_id",
        "start_ns",
        "state",
        "trace_id_value",
    )

    def __init__(
        self,
        tracing: Tracing,
        trace_id: int,
        span_id: int,
        flags: int,
        parent: TraceParent | None,
        state: TraceState,
        method: str,
        path: str,
    ) -> None:
        self._tracing = tracing
        self.start_ns = time.time_ns()
        self.trace_id_value = trace_id
        self.span_id = span_id
        self.flags = flags
        self.parent = parent
        self.state = state
        self.is_sampled = bool(flags & SAMPLED)
        self.method = method
        self.path = path
        self.attempts: list[_Attempt] = []
        self._attempt: _Attempt | None = None  # the attempt under way
        self._answered_ns = 0
        self.ctx: RequestContext | None = None  # the request, as attempts start
        self.policy_version: int | None = None
        self.end_ns = 0
        self.raised = False  # the ASGI call raised: a fault of the gateway's own
        self._head = ""  # "00-<trace id>-", made once when first asked for

    @property
    def trace_id(self) -> str:
        return (self._head or self._traceparent_head())[3:35]

    def _traceparent_head(self) -> str:
        self._head = attrs.traceparent_head(self.trace_id_value)
        return self._head

    def observing(self, ctx: RequestContext) -> RequestTrace:
        """The observer of this request's attempts (their spans read its endpoint)."""
        self.ctx = ctx
        return self

    def started(self, deployment: Deployment) -> None:
        attempt = self._attempt = _Attempt(deployment, len(self.attempts) + 1)
        self.attempts.append(attempt)

    def failed(self, failure: UpstreamFailure) -> None:
        attempt, self._attempt = self._attempt, None
        if attempt is not None:
            attempt.end, attempt.failure = AttemptEnd.FAILED, failure
            attempt.end_ns = time.time_ns()

    def answered(self) -> None:
        attempt, self._attempt = self._attempt, None
        if attempt is not None:
            attempt.end = AttemptEnd.ANSWERED
        self._answered_ns = time.time_ns()

    def add_headers(self, headers: dict[str, str]) -> None:
        attempt = self._attempt
        span_id = self.span_id if attempt is None else attempt.span_id
        headers[names.TRACEPARENT] = attrs.format_traceparent(
            self.trace_id_value, span_id, self.flags, self._head or self._traceparent_head()
        )
        if self.state is not _NO_STATE:  # the usual trace has none to pass on
            state = self.state.to_header()
            if state:
                headers[names.TRACESTATE] = state

    def finish(self, ctx: RequestContext) -> None:
        """The record point: the request's facts are known; open attempts end."""
        if not self.is_sampled:
            return
        self.ctx = ctx
        self.policy_version = self._tracing.policy_version()
        now = time.time_ns()
        for attempt in self.attempts:
            if attempt.end is AttemptEnd.ANSWERED and not attempt.end_ns:
                # A whole answer's attempt ended when it arrived; a stream's ends now.
                attempt.end_ns = now if ctx.is_stream else self._answered_ns
        cut, self._attempt = self._attempt, None
        if cut is not None:  # the request ended while this attempt ran
            cut.end_ns = now

    def end(self, failed: bool) -> None:
        """The server span ends when the ASGI call returns (the middleware)."""
        if not self.is_sampled:
            return
        self.end_ns = time.time_ns()
        self.raised = failed
        self._tracing.ended(self)

    def spans(self) -> list[ReadableSpan]:
        """Its spans as the SDK's objects (for an SDK processor)."""
        return self._tracing.spans_of(self)

    @property
    def resource(self) -> Resource:
        return self._tracing.resource

    @property
    def scope(self) -> InstrumentationScope:
        return self._tracing.scope

    def encoded_spans(self) -> list[bytes]:
        """Its spans as OTLP `Span` messages (the batcher's export thread asks, once the
        trace has ended): the same bytes as its `spans()` encoded, with no SDK object."""
        facts = span_facts(self, self._tracing.blocks)
        return otlp.encode_facts(self.trace_id_value, self.state, facts)


def span_facts(trace: RequestTrace, blocks: Blocks) -> list[SpanFacts]:
    """A finished trace's spans: its attempts' client spans, then the server span."""
    ctx = trace.ctx
    answer = None if ctx is None else otlp.Block(attrs.answer_attributes(ctx))  # on two spans
    # The request's sampling parameters, on every attempt's span (read here, in the
    # export thread, from the body the context refers to).
    parameters = otlp.Block(attrs.request_parameters(None if ctx is None else ctx.request_body))
    facts = [
        _attempt_facts(trace, ctx, answer, parameters, attempt, blocks)
        for attempt in trace.attempts
    ]
    parts: otlp.AttributeParts = (blocks.path(trace.method, trace.path),)
    name = f"{trace.method} {trace.path}"
    is_error = trace.raised
    if ctx is not None and answer is not None:
        name = attrs.server_span_name(ctx.endpoint, ctx.model, ctx.error_code)
        head = blocks.head(attrs.request_head(ctx, trace.policy_version))
        request_id = {names.GATEWAY_REQUEST_ID: ctx.request_id}
        parts = (*parts, head, request_id, answer, attrs.request_tail(ctx))
        is_error = is_error or ctx.status >= 500
    parent = trace.parent
    server = SpanFacts(
        name, trace.span_id, 0 if parent is None else parent.span_id, parent is not None,
        SpanKind.SERVER, trace.start_ns, trace.end_ns, parts, is_error,
    )  # fmt: skip
    facts.append(server)
    return facts


def _attempt_facts(
    trace: RequestTrace,
    ctx: RequestContext | None,
    answer: otlp.Block | None,
    parameters: otlp.Block,
    attempt: _Attempt,
    blocks: Blocks,
) -> SpanFacts:
    endpoint = "chat" if ctx is None else ctx.endpoint
    deployment = attempt.deployment
    is_stream = ctx is not None and ctx.is_stream
    started = blocks.attempt(endpoint, deployment, attempt.number, is_stream)
    ended: otlp.Block | Attributes
    is_error = True
    failure = attempt.failure
    if attempt.end is AttemptEnd.FAILED and failure is not None:
        ended = {names.ERROR_TYPE: attrs.failure_error_type(failure)}
        if failure.status is not None:
            ended[names.GATEWAY_UPSTREAM_STATUS] = failure.status
    elif attempt.end is AttemptEnd.ANSWERED and ctx is not None and answer is not None:
        ended = answer
        status = attrs.upstream_refusal(ctx)
        if status is not None:  # its own 4xx, relayed: typed as a failed attempt's status
            ended = {
                **answer.attributes,
                names.ERROR_TYPE: str(status),
                names.GATEWAY_UPSTREAM_STATUS: status,
            }
        is_error = ctx.outcome is not Outcome.OK
        learned = attrs.response_id_attribute(ctx, is_client_span=True)
        # From this attempt's start: a failover's earlier attempts are not this one's.
        first_chunk_s = attrs.first_chunk_s(ctx, attrs.answer_started_s(ctx))
        if first_chunk_s is not None:
            learned[names.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = first_chunk_s
        if learned:
            parts: otlp.AttributeParts = (started, parameters, ended, learned)
            return _client_span(trace, endpoint, attempt, parts, is_error)
    else:
        ended = _CANCELLED
    return _client_span(trace, endpoint, attempt, (started, parameters, ended), is_error)


def _client_span(
    trace: RequestTrace,
    endpoint: str,
    attempt: _Attempt,
    parts: otlp.AttributeParts,
    is_error: bool,
) -> SpanFacts:
    return SpanFacts(
        f"{attrs.operation_name(endpoint)} {attempt.deployment.model}",
        attempt.span_id, trace.span_id, False, SpanKind.CLIENT,
        attempt.start_ns, attempt.end_ns or trace.end_ns, parts, is_error,
    )  # fmt: skip


_CANCELLED = otlp.Block({names.ERROR_TYPE: names.AttemptResult.CANCELLED.value})
# Blocks kept per kind (attempt, head, path); more and that kind starts over. Heads
# repeat per team, subject, model and status: bounded like the metrics' label sets.
BLOCKS_KEPT = 4096


class Blocks:
    """The attribute blocks that repeat across requests, found by the values they are
    made from: an attempt's (endpoint, provider type and address, deployment, number,
    stream), the
    server span's head (telemetry/attributes.request_head) and its route. Used by one
    thread at a time (the export thread, or an SDK processor's caller); a race would
    only build one twice."""

    def __init__(
        self,
        provider_type: Callable[[str], str | None],
        server_of: Callable[[str], attrs.ServerAddress | None] | None = None,
    ) -> None:
        self._provider_type = provider_type
        self._server_of = server_of
        self._attempts: dict[tuple[object, ...], otlp.Block] = {}
        self._heads: dict[attrs.RequestHead, otlp.Block] = {}
        self._paths: dict[tuple[str, str], otlp.Block] = {}

    def attempt(
        self, endpoint: str, deployment: Deployment, number: int, is_stream: bool
    ) -> otlp.Block:
        provider = deployment.provider
        provider_type = self._provider_type(provider)  # both may change with the policy
        server = None if self._server_of is None else self._server_of(provider)
        key = (endpoint, provider_type, server, deployment.model, deployment.label, number,
               is_stream)  # fmt: skip
        found = self._attempts.get(key)
        if found is None:
            found = _kept(self._attempts)[key] = otlp.Block(
                attrs.attempt_attributes(
                    endpoint, provider_type, deployment, number, is_stream, server
                )
            )
        return found

    def head(self, head: attrs.RequestHead) -> otlp.Block:
        found = self._heads.get(head)
        if found is None:
            found = _kept(self._heads)[head] = otlp.Block(attrs.head_attributes(head))
        return found

    def path(self, method: str, path: str) -> otlp.Block:
        found = self._paths.get((method, path))
        if found is None:
            found = _kept(self._paths)[method, path] = otlp.Block(
                {names.HTTP_REQUEST_METHOD: method, names.URL_PATH: path}
            )
        return found


def _kept(found: dict[_K, otlp.Block]) -> dict[_K, otlp.Block]:
    """`found`, emptied first when full."""
    if len(found) >= BLOCKS_KEPT:
        found.clear()
    return found


def readable_spans(
    tracing: Tracing, trace: RequestTrace, facts: list[SpanFacts]
) -> list[ReadableSpan]:
    """The same spans as the SDK's objects, for an SDK span processor."""
    flags = trace.flags
    trace_flags = _FLAGS[flags] if flags <= SAMPLED else TraceFlags(flags)
    spans = []
    for fact in facts:
        parent = None
        if fact.parent_id:
            remote = trace.parent if fact.parent_is_remote else None
            parent = SpanContext(
                trace.trace_id_value, fact.parent_id, is_remote=fact.parent_is_remote,
                trace_flags=trace_flags if remote is None else TraceFlags(remote.trace_flags),
                trace_state=trace.state,
            )  # fmt: skip
        context = SpanContext(
            trace.trace_id_value, fact.span_id, is_remote=False, trace_flags=trace_flags,
            trace_state=trace.state,
        )  # fmt: skip
        spans.append(
            ReadableSpan(
                fact.name,
                context,
                parent,
                tracing.resource,
                otlp.merged(fact.parts),
                kind=fact.kind,
                status=_ERROR if fact.is_error else _UNSET,
                start_time=fact.start_ns,
                end_time=fact.end_ns,
                instrumentation_scope=tracing.scope,
            )
        )
    return spans
