"""OpenTelemetry traces: one server span per inference request, one client span per
upstream attempt, exported over OTLP/HTTP by a batch processor.

Exported by telemetry/otlp.py. Imported only when GATEWAY_OTLP_ENDPOINT is set
(telemetry/__init__.py), so a
gateway without it loads no SDK and builds no span. The tracer provider is ours, not
the global one, and is built in each worker after the fork (REFERENCE.md §3.4).
Span attributes come from telemetry/attributes.py; no span carries prompt or
completion text, a token or a key.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.context import RequestContext
from gateway.policy.compiled import Deployment
from gateway.providers.base import UpstreamFailure
from gateway.telemetry import attributes as attrs
from gateway.telemetry import names
from gateway.telemetry.current import CURRENT_TRACE
from gateway.telemetry.otlp import OtlpHttpExporter

_PROPAGATOR = TraceContextTextMapPropagator()  # stateless: a constant


class Tracing:
    """The tracer provider of this process and what builds each request's trace."""

    def __init__(
        self,
        provider: TracerProvider,
        provider_type_of: Callable[[str], str | None],
        policy_version: Callable[[], int | None],
    ) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer(names.INSTRUMENTATION_NAME)
        self._provider_type_of = provider_type_of
        self._policy_version = policy_version

    @staticmethod
    def provider_exporting_to(exporter: SpanExporter, sample_ratio: float = 1.0) -> TracerProvider:
        """A tracer provider that batches finished spans to `exporter`, recording
        `sample_ratio` of new traces and following a caller's sampling decision."""
        provider = TracerProvider(
            resource=Resource.create({"service.name": names.SERVICE_NAME}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return provider

    @classmethod
    def to_otlp(
        cls,
        endpoint: str,
        sample_ratio: float,
        provider_type_of: Callable[[str], str | None],
        policy_version: Callable[[], int | None],
    ) -> Tracing:
        exporter = OtlpHttpExporter(attrs.traces_url(endpoint))
        provider = cls.provider_exporting_to(exporter, sample_ratio)
        return cls(provider, provider_type_of, policy_version)

    def begin(self, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> RequestTrace:
        """Start the server span, continuing the caller's trace when it sent a valid
        `traceparent` (an invalid one starts a new trace)."""
        carrier: dict[str, str] = {}
        for key, value in headers:
            if key in (b"traceparent", b"tracestate"):
                carrier[key.decode("latin-1")] = value.decode("latin-1")
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        # Attributes go on after the start: given to start_span, the SDK copies and
        # checks them twice (for the sampler, then for the span).
        span = self._tracer.start_span(f"{method} {path}", context=parent, kind=SpanKind.SERVER)
        if span.is_recording():
            span.set_attributes({names.HTTP_REQUEST_METHOD: method, names.URL_PATH: path})
        return RequestTrace(self._tracer, span, self._provider_type_of, self._policy_version)

    def record(self, ctx: RequestContext) -> None:
        """A recorder (Services.recorders): the finished request onto its spans."""
        current = CURRENT_TRACE.get()
        if current is not None:
            current.finish(ctx)

    def flush(self) -> None:
        """Export what is queued now (blocking: call it off the event loop)."""
        self._provider.force_flush()

    def close(self) -> None:
        """Export what is still queued, then stop the exporter."""
        self._provider.shutdown()


class RequestTrace:
    """One inference request's spans: the server span and its attempts' client spans.

    The failover loop reports attempts as they start and end (routing/tries.py); a
    failed attempt's span ends at once, the answering one stays open until the
    record point, so a stream's attempt span lasts until the stream has ended.
    """

    __slots__ = (
        "_answer",
        "_answered_ns",
        "_attempt",
        "_count",
        "_policy_version",
        "_provider_type_of",
        "_request",
        "_server",
        "_server_context",
        "_tracer",
    )

    def __init__(
        self,
        tracer: Tracer,
        server: Span,
        provider_type_of: Callable[[str], str | None],
        policy_version: Callable[[], int | None],
    ) -> None:
        self._tracer = tracer
        self._server = server
        self._server_context: Context = trace.set_span_in_context(server)
        self._provider_type_of = provider_type_of
        self._policy_version = policy_version
        self._attempt: Span | None = None  # the attempt under way
        self._answer: Span | None = None  # the attempt that answered, until the end
        self._answered_ns = 0
        self._count = 0
        self._request: RequestContext | None = None

    def observing(self, ctx: RequestContext) -> RequestTrace:
        """The observer of this request's attempts (their spans read its endpoint, model)."""
        self._request = ctx
        return self

    @property
    def trace_id(self) -> str | None:
        context = self._server.get_span_context()
        return f"{context.trace_id:032x}" if context.is_valid else None

    def started(self, deployment: Deployment) -> None:
        self._count += 1
        ctx = self._request
        endpoint = "chat" if ctx is None else ctx.endpoint
        self._attempt = span = self._tracer.start_span(
            f"{attrs.operation_name(endpoint)} {deployment.model}",
            context=self._server_context,
            kind=SpanKind.CLIENT,
        )
        if span.is_recording():
            span.set_attributes(
                attrs.attempt_attributes(
                    endpoint,
                    self._provider_type_of(deployment.provider),
                    deployment,
                    self._count,
                    ctx is not None and ctx.is_stream,
                )
            )

    def failed(self, failure: UpstreamFailure) -> None:
        span, self._attempt = self._attempt, None
        if span is None:
            return
        span.set_attribute(names.ERROR_TYPE, attrs.failure_error_type(failure))
        if failure.status is not None:
            span.set_attribute(names.GATEWAY_UPSTREAM_STATUS, failure.status)
        span.set_status(Status(StatusCode.ERROR))
        span.end()

    def answered(self) -> None:
        self._answer, self._attempt = self._attempt, None
        self._answered_ns = time.time_ns()

    def add_headers(self, headers: dict[str, str]) -> None:
        span = self._attempt or self._server
        context = span.get_span_context()
        if not context.is_valid:
            return
        headers[names.TRACEPARENT] = attrs.format_traceparent(
            context.trace_id, context.span_id, context.trace_flags
        )
        state = context.trace_state.to_header()
        if state:
            headers[names.TRACESTATE] = state

    def finish(self, ctx: RequestContext) -> None:
        server = self._server
        if not server.is_recording():  # not sampled: its attempts are not either
            return
        server.update_name(f"{attrs.operation_name(ctx.endpoint)} {ctx.model or ctx.endpoint}")
        server.set_attributes(attrs.request_attributes(ctx, self._policy_version()))
        if ctx.status >= 500:
            server.set_status(Status(StatusCode.ERROR))
        answer, self._answer = self._answer, None
        if answer is not None:
            answer.set_attributes(attrs.answer_attributes(ctx))
            if ctx.outcome.value != "ok":
                answer.set_status(Status(StatusCode.ERROR))
            # A whole answer's attempt ended when it arrived; a stream's ends now.
            answer.end(end_time=None if ctx.is_stream else self._answered_ns)
        cut, self._attempt = self._attempt, None
        if cut is not None:  # the request ended while this attempt ran
            cut.set_attribute(names.ERROR_TYPE, names.AttemptResult.CANCELLED.value)
            cut.set_status(Status(StatusCode.ERROR))
            cut.end()

    def end(self, failed: bool) -> None:
        """The server span ends when the ASGI call returns (the middleware)."""
        if failed:
            self._server.set_status(Status(StatusCode.ERROR))
        self._server.end()
