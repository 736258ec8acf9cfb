"""OpenTelemetry traces: one server span per inference request, one client span per
upstream attempt, handed to a span processor (telemetry/batch.py's batches, exported
over OTLP/HTTP by telemetry/otlp.py).

Imported only when GATEWAY_OTLP_ENDPOINT is set (telemetry/__init__.py), so a
gateway without it loads no SDK and builds no span. A request's spans are recorded
as plain values while it runs (ids, times, attribute dicts) and become the SDK's
`ReadableSpan`s only when they end: the SDK's live `Span` (locks, attribute
validation twice over, a copy at the end) cost several times more per request, and
every value here is already a valid attribute. Sampling follows OpenTelemetry's
ParentBased(TraceIdRatioBased). Built in each worker after the fork (REFERENCE.md
§3.4). No span carries prompt or completion text, a token or a key.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from gateway.context import RequestContext
from gateway.policy.compiled import Deployment
from gateway.providers.base import UpstreamFailure
from gateway.telemetry import attributes as attrs
from gateway.telemetry import names
from gateway.telemetry.attributes import Attributes
from gateway.telemetry.batch import SpanBatcher
from gateway.telemetry.current import CURRENT_TRACE
from gateway.telemetry.otlp import OtlpHttpExporter

SAMPLED = 0x01
_NO_STATE = TraceState()  # immutable: one for every trace without a caller's tracestate
_FLAGS = (TraceFlags(0), TraceFlags(SAMPLED))
_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)


class Tracing:
    """This process's span processor and what builds each request's trace."""

    def __init__(
        self,
        processor: SpanProcessor,
        provider_type_of: Callable[[str], str | None],
        policy_version: Callable[[], int | None],
        sample_ratio: float = 1.0,
    ) -> None:
        self._processor = processor
        self._provider_type_of = provider_type_of
        self._policy_version = policy_version
        self._sample_ratio = sample_ratio
        self._resource = Resource.create({"service.name": names.SERVICE_NAME})
        self._scope = InstrumentationScope(names.INSTRUMENTATION_NAME)

    @classmethod
    def to_otlp(
        cls,
        endpoint: str,
        sample_ratio: float,
        provider_type_of: Callable[[str], str | None],
        policy_version: Callable[[], int | None],
    ) -> Tracing:
        processor = SpanBatcher(OtlpHttpExporter(attrs.traces_url(endpoint)))
        return cls(processor, provider_type_of, policy_version, sample_ratio)

    def begin(self, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> RequestTrace:
        """Start the server span, continuing the caller's trace when it sent a valid
        `traceparent` (an invalid one starts a new trace)."""
        parent = None
        trace_state = None
        for key, value in headers:
            if key == b"traceparent":
                parent = attrs.parse_traceparent(value.decode("latin-1"))
            elif key == b"tracestate":
                trace_state = value.decode("latin-1")
        remote = None
        if parent is not None:
            state = TraceState.from_header([trace_state]) if trace_state else _NO_STATE
            remote = SpanContext(
                parent.trace_id,
                parent.span_id,
                is_remote=True,
                trace_flags=TraceFlags(parent.trace_flags),
                trace_state=state,
            )
            trace_id, flags = parent.trace_id, parent.trace_flags
        else:
            trace_id = random.getrandbits(128) or 1
            flags = SAMPLED if attrs.is_sampled_new(trace_id, self._sample_ratio) else 0
        return RequestTrace(self, trace_id, flags, remote, method, path)

    def emit(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        start_ns: int,
        end_ns: int,
        attributes: Attributes,
        status: Status,
    ) -> None:
        """One finished span to the processor (the exporter's batch)."""
        self._processor.on_end(
            ReadableSpan(
                name,
                context,
                parent,
                self._resource,
                attributes,
                kind=kind,
                status=status,
                start_time=start_ns,
                end_time=end_ns,
                instrumentation_scope=self._scope,
            )
        )

    def provider_type(self, provider: str) -> str | None:
        return self._provider_type_of(provider)

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
        """Export what is still queued, then stop."""
        self._processor.shutdown()


class _Attempt:
    """A client span under way: what it will be exported with."""

    __slots__ = ("attributes", "context", "name", "start_ns")

    def __init__(self, name: str, context: SpanContext, attributes: Attributes) -> None:
        self.name = name
        self.context = context
        self.attributes = attributes
        self.start_ns = time.time_ns()


class RequestTrace:
    """One inference request's spans: the server span and its attempts' client spans.

    The failover loop reports attempts as they start and end (routing/tries.py); a
    failed attempt's span ends at once, the answering one at the record point, so a
    stream's attempt span lasts until the stream has ended. Unsampled, nothing is
    recorded, but the trace still goes on to the upstream.
    """

    __slots__ = (
        "_answer",
        "_answered_ns",
        "_attempt",
        "_attributes",
        "_context",
        "_count",
        "_name",
        "_parent",
        "_request",
        "_start_ns",
        "_status",
        "_tracing",
        "is_sampled",
    )

    def __init__(
        self,
        tracing: Tracing,
        trace_id: int,
        flags: int,
        parent: SpanContext | None,
        method: str,
        path: str,
    ) -> None:
        self._tracing = tracing
        self._start_ns = time.time_ns()
        state = parent.trace_state if parent is not None else _NO_STATE
        self._context = SpanContext(
            trace_id,
            random.getrandbits(64) or 1,
            is_remote=False,
            trace_flags=_FLAGS[flags] if flags <= SAMPLED else TraceFlags(flags),
            trace_state=state,
        )
        self._parent = parent
        self.is_sampled = bool(flags & SAMPLED)
        self._name = f"{method} {path}"
        self._attributes: Attributes = {names.HTTP_REQUEST_METHOD: method, names.URL_PATH: path}
        self._status = _UNSET
        self._attempt: _Attempt | None = None  # the attempt under way
        self._answer: _Attempt | None = None  # the attempt that answered, until the end
        self._answered_ns = 0
        self._count = 0
        self._request: RequestContext | None = None

    @property
    def trace_id(self) -> str:
        return f"{self._context.trace_id:032x}"

    def observing(self, ctx: RequestContext) -> RequestTrace:
        """The observer of this request's attempts (their spans read its endpoint)."""
        self._request = ctx
        return self

    def started(self, deployment: Deployment) -> None:
        self._count += 1
        ctx = self._request
        endpoint = "chat" if ctx is None else ctx.endpoint
        context = SpanContext(
            self._context.trace_id,
            random.getrandbits(64) or 1,
            is_remote=False,
            trace_flags=self._context.trace_flags,
            trace_state=self._context.trace_state,
        )
        attributes = (
            attrs.attempt_attributes(
                endpoint,
                self._tracing.provider_type(deployment.provider),
                deployment,
                self._count,
                ctx is not None and ctx.is_stream,
            )
            if self.is_sampled
            else {}
        )
        name = f"{attrs.operation_name(endpoint)} {deployment.model}"
        self._attempt = _Attempt(name, context, attributes)

    def failed(self, failure: UpstreamFailure) -> None:
        attempt, self._attempt = self._attempt, None
        if attempt is None or not self.is_sampled:
            return
        attempt.attributes[names.ERROR_TYPE] = attrs.failure_error_type(failure)
        if failure.status is not None:
            attempt.attributes[names.GATEWAY_UPSTREAM_STATUS] = failure.status
        self._end_attempt(attempt, time.time_ns(), _ERROR)

    def answered(self) -> None:
        self._answer, self._attempt = self._attempt, None
        self._answered_ns = time.time_ns()

    def add_headers(self, headers: dict[str, str]) -> None:
        context = self._attempt.context if self._attempt is not None else self._context
        headers[names.TRACEPARENT] = attrs.format_traceparent(
            context.trace_id, context.span_id, context.trace_flags
        )
        if context.trace_state is not _NO_STATE:  # the usual trace has none to pass on
            state = context.trace_state.to_header()
            if state:
                headers[names.TRACESTATE] = state

    def finish(self, ctx: RequestContext) -> None:
        if not self.is_sampled:
            return
        self._name = f"{attrs.operation_name(ctx.endpoint)} {ctx.model or ctx.endpoint}"
        self._attributes.update(attrs.request_attributes(ctx, self._tracing.policy_version()))
        if ctx.status >= 500:
            self._status = _ERROR
        answer, self._answer = self._answer, None
        if answer is not None:
            answer.attributes.update(attrs.answer_attributes(ctx))
            # A whole answer's attempt ended when it arrived; a stream's ends now.
            end_ns = time.time_ns() if ctx.is_stream else self._answered_ns
            self._end_attempt(answer, end_ns, _UNSET if ctx.outcome.value == "ok" else _ERROR)
        cut, self._attempt = self._attempt, None
        if cut is not None:  # the request ended while this attempt ran
            cut.attributes[names.ERROR_TYPE] = names.AttemptResult.CANCELLED.value
            self._end_attempt(cut, time.time_ns(), _ERROR)

    def end(self, failed: bool) -> None:
        """The server span ends when the ASGI call returns (the middleware)."""
        if not self.is_sampled:
            return
        self._tracing.emit(
            self._name,
            self._context,
            self._parent,
            SpanKind.SERVER,
            self._start_ns,
            time.time_ns(),
            self._attributes,
            _ERROR if failed else self._status,
        )

    def _end_attempt(self, attempt: _Attempt, end_ns: int, status: Status) -> None:
        self._tracing.emit(
            attempt.name,
            attempt.context,
            self._context,
            SpanKind.CLIENT,
            attempt.start_ns,
            end_ns,
            attempt.attributes,
            status,
        )
