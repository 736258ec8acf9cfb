"""The trace of the request running in this task, for the few places that need it.

The tracing middleware sets it for an inference request when tracing is on; the
failover loop's `Tries` reports attempts to it, the provider adds its traceparent to
the upstream call, the log lines read its trace id. With tracing off it is None and
each of those costs one ContextVar read. This module imports no OpenTelemetry code:
the SDK is loaded only when GATEWAY_OTLP_ENDPOINT is set.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from gateway.policy.compiled import Deployment
    from gateway.providers.base import UpstreamFailure


class ActiveTrace(Protocol):
    """One inference request's spans while it runs (telemetry/tracing.py RequestTrace)."""

    @property
    def trace_id(self) -> str:
        """32 hex digits (sampled or not: it still goes on to the upstream)."""
        ...

    def observing(self, ctx: RequestContext) -> ActiveTrace:
        """Itself, as the observer of this request's upstream attempts (routing/tries.py)."""
        ...

    def started(self, deployment: Deployment) -> None:
        """An upstream attempt begins: its client span starts and becomes the current one."""
        ...

    def failed(self, failure: UpstreamFailure) -> None: ...

    def answered(self) -> None: ...

    def add_headers(self, headers: dict[str, str]) -> None:
        """Our traceparent (and the caller's tracestate) for the attempt under way."""
        ...

    def finish(self, ctx: RequestContext) -> None:
        """The record point: the request's facts go on its spans; open ones end."""
        ...


CURRENT_TRACE: ContextVar[ActiveTrace | None] = ContextVar("gateway_trace", default=None)


def current_trace() -> ActiveTrace | None:
    return CURRENT_TRACE.get()


def attempt_observer(ctx: RequestContext) -> ActiveTrace | None:
    """What the failover loop reports attempts to: the request's trace, if traced."""
    trace = CURRENT_TRACE.get()
    return None if trace is None else trace.observing(ctx)


def add_trace_headers(headers: dict[str, str]) -> None:
    """Carry our trace to the upstream: nothing unless this request is traced."""
    trace = CURRENT_TRACE.get()
    if trace is not None:
        trace.add_headers(headers)


def current_trace_id() -> str | None:
    trace = CURRENT_TRACE.get()
    return None if trace is None else trace.trace_id
