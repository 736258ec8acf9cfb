"""Relay an upstream SSE stream to the client, learning its usage on the way.

Events are forwarded as the upstream sent them. The gateway always asks the
upstream for usage; the usage chunk reaches the client only if the client
asked for it (`stream_options.include_usage`), as OpenAI behaves. When the
upstream reports nothing (or the stream breaks first), usage is counted from
the events seen and marked estimated. A failure after the first byte ends the
stream with an OpenAI-shaped error event, since the status line is long gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

import orjson

from gateway.context import RequestContext
from gateway.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable, error_body_bytes
from gateway.policy.compiled import Deployment
from gateway.providers.base import UpstreamFailure
from gateway.routing.affinity import ResponseIds
from gateway.sse import is_done, json_of
from gateway.usage.usage import Usage, estimate_usage, output_text, usage_from_report

# Byte patterns for the fast path; anything else that mentions usage is parsed.
USAGE_KEY = b'"usage"'
USAGE_OBJECT, USAGE_OBJECT_SPACED = b'"usage":{', b'"usage": {'
USAGE_NULL = (b',"usage":null', b'"usage":null,', b', "usage": null', b'"usage": null, ')
USAGE_NULL_COMPACT, USAGE_NULL_SPACED = b'"usage":null', b'"usage": null'
RESPONSE_KEY = b'"response"'


def error_event(error: GatewayError) -> bytes:
    return b"data: " + error_body_bytes(error) + b"\n\n"


async def close_stream(events: AsyncIterator[bytes]) -> None:
    """Release an upstream stream (and its connection) now, not at garbage collection."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


class StreamRelay:
    """Wraps the upstream's events; `events()` is what the client receives."""

    def __init__(
        self,
        ctx: RequestContext,
        upstream: AsyncIterator[bytes],
        first: bytes,
        *,
        body: Mapping[str, Any],
        deployment: Deployment,
        client_wants_usage: bool,
        idle_timeout_s: float,
        deadline: float,
        clock: Callable[[], float],
        on_failure: Callable[[UpstreamFailure], None],
        response_ids: ResponseIds | None = None,
    ) -> None:
        self.ctx = ctx
        self._upstream = upstream
        self._first = first
        self._body = body
        self._deployment = deployment
        self._model = deployment.model
        self._ids = response_ids
        self._wants_usage = client_wants_usage
        self._idle_timeout_s = idle_timeout_s
        self._deadline = deadline
        self._clock = clock
        self._on_failure = on_failure
        self._seen: list[bytes] = []  # events, parsed only if no usage arrives
        self._usage: Usage | None = None
        self._strips_usage = ctx.endpoint in ("chat", "completions") and not client_wants_usage

    def _observe(self, event: bytes) -> bytes | None:
        """Record what the event says; return the bytes to send, or None to drop it.

        Most events mention no usage, or only `"usage": null` (OpenAI's and
        vLLM's spacing): byte checks handle those. The rest are parsed.
        """
        if self._ids is not None:
            event = self._translate_ids(self._ids, event)
        if USAGE_KEY not in event:
            self._seen.append(event)
            return event
        if USAGE_OBJECT not in event and USAGE_OBJECT_SPACED not in event:
            if self._strips_usage:
                for pattern in USAGE_NULL:
                    if pattern in event:
                        event = event.replace(pattern, b"")
                if USAGE_KEY not in event:
                    self._seen.append(event)
                    return event
            elif USAGE_NULL_COMPACT in event or USAGE_NULL_SPACED in event:
                self._seen.append(event)
                return event
        return self._observe_usage(event)

    def _observe_usage(self, event: bytes) -> bytes | None:
        """An event that carries a usage report (or spells `usage` unusually)."""
        parsed = json_of(event)
        if not isinstance(parsed, dict):
            self._seen.append(event)
            return event
        report = parsed.get("usage")
        if report is None and isinstance(parsed.get("response"), dict):
            report = parsed["response"].get("usage")  # Responses: response.completed
        found = usage_from_report(report)
        if found is not None:
            self._usage = found
        if self._strips_usage and "usage" in parsed:
            if isinstance(report, dict) and not parsed.get("choices"):
                return None  # the usage-only chunk the client did not ask for
            del parsed["usage"]
            event = b"data: " + orjson.dumps(parsed) + b"\n\n"
        if found is None or parsed.get("choices"):
            self._seen.append(event)
        return event

    def _translate_ids(self, ids: ResponseIds, event: bytes) -> bytes:
        """Responses streams: the client sees gateway response ids (routing/affinity.py)."""
        if not ids.learned and RESPONSE_KEY in event:
            parsed = json_of(event)
            if isinstance(parsed, dict):
                ids.learn(self._deployment, parsed.get("response"))
        return ids.rewrite(event)

    async def _next(self) -> bytes:
        remaining = self._deadline - self._clock()
        async with asyncio.timeout(max(0.0, min(self._idle_timeout_s, remaining))):
            return await anext(self._upstream)

    async def events(self) -> AsyncGenerator[bytes, None]:
        try:
            first = self._observe(self._first)
            if first is not None:
                yield first
            while True:
                try:
                    event = await self._next()
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    yield self._timed_out()
                    return
                except UpstreamFailure as failure:
                    yield self._fail(
                        failure, UpstreamUnavailable("The upstream failed mid-stream.")
                    )
                    return
                out = self._observe(event)
                if out is not None:
                    yield out
                if is_done(event):
                    return
        except (asyncio.CancelledError, GeneratorExit):
            self.ctx.outcome = "client_disconnected"
            raise
        finally:
            await close_stream(self._upstream)

    def _timed_out(self) -> bytes:
        if self._clock() >= self._deadline - 0.001:  # asyncio may fire a hair early
            # A healthy upstream still generating: the request's own limit, not a fault
            # of the deployment, so it is not counted towards its cooldown.
            error = UpstreamTimeout("The request reached its deadline (routing timeout_s).")
            return self._end(error)
        failure = UpstreamFailure("stream stalled", is_timeout=True)
        return self._fail(failure, UpstreamTimeout("The upstream stopped responding."))

    def _fail(self, failure: UpstreamFailure, error: GatewayError) -> bytes:
        self._on_failure(failure)
        return self._end(error)

    def _end(self, error: GatewayError) -> bytes:
        self.ctx.outcome = "upstream_error"
        self.ctx.error_code = error.code
        return error_event(error)

    async def final_usage(self) -> Usage:
        """The upstream's report, or a count of what was seen (off the event loop)."""
        if self._usage is not None:
            return self._usage
        return await asyncio.to_thread(self._count_seen)

    def _count_seen(self) -> Usage:
        generated = []
        for event in self._seen:
            parsed = json_of(event)
            if isinstance(parsed, dict):
                generated.append(output_text(self.ctx.endpoint, parsed))
        return estimate_usage(self.ctx.endpoint, self._body, self._model, "".join(generated))
