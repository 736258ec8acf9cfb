"""The one loop that drives a stream: upstream reads in, steps, client writes out.

It owns the upstream iterator and the stream's two time limits; what happens to
the bytes is the steps' business (steps.py). One upstream read leaves as one
client write: events that arrived together are not split into separate sends.
A failure after the first byte ends the stream with an OpenAI-shaped error
event, since the status line is long gone.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

import orjson

from gateway.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable, error_body_bytes
from gateway.providers.base import EndsWithDone, UpstreamFailure
from gateway.stream.steps import Chain

Send = Callable[[bytes], Awaitable[None]]
EARLY_S = 0.001  # the loop may fire a timer a hair early


def error_event(error: GatewayError) -> bytes:
    """Chat and completions: OpenAI's error body as a data line."""
    return b"data: " + error_body_bytes(error) + b"\n\n"


SEQUENCE_KEY = b'"sequence_number":'
_NUMBER = re.compile(rb"\s*(\d{1,18})")


class ResponsesErrorEvent:
    """Responses: OpenAI's `error` event (the SDK yields it as a ResponseErrorEvent), numbered
    after the last event the client got: every Responses event carries `sequence_number`,
    which the SDK types as a required int. `seen` reads each write's last number; a bytes
    search, no parse (in a JSON text an unescaped `"sequence_number":` can only be a key)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = -1

    def seen(self, data: bytes) -> None:
        at = data.rfind(SEQUENCE_KEY)
        if at >= 0 and (number := _NUMBER.match(data, at + len(SEQUENCE_KEY))) is not None:
            self.last = int(number[1])

    def __call__(self, error: GatewayError) -> bytes:
        self.last += 1
        payload = {
            "type": "error",
            "sequence_number": self.last,
            "code": error.code,
            "message": error.message,
            "param": error.param,
        }
        return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"


ErrorEvent = Callable[[GatewayError], bytes]


async def close_stream(events: AsyncIterator[bytes]) -> None:
    """Release an upstream stream (and its connection) now, not at garbage collection."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """How a relayed stream ended: cleanly (error None), or with an error event."""

    error: GatewayError | None = None
    failure: UpstreamFailure | None = None  # the deployment's fault: counts to its cooldown


class _Limit(Enum):
    IDLE = "idle"
    DEADLINE = "deadline"


class ReadTimer:
    """One timer for the whole stream, not one per read: it fires when the current
    read has waited `idle_s`, or when the request's deadline passes mid-read, and
    then cancels the reading task. Time spent sending to a slow client is not idle."""

    __slots__ = (
        "_deadline",
        "_handle",
        "_idle_s",
        "_loop",
        "_task",
        "fired",
        "is_reading",
        "since",
    )

    def __init__(self, idle_s: float, deadline: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._idle_s = idle_s
        self._deadline = deadline  # in loop time
        self._handle: asyncio.TimerHandle | None = None
        self.fired: _Limit | None = None
        self.is_reading = False
        self.since = 0.0

    def reading(self) -> None:
        self.since = self._loop.time()
        self.is_reading = True
        if self._handle is None:
            self._arm()

    def _arm(self) -> None:
        due = min(self.since + self._idle_s, self._deadline)
        self._handle = self._loop.call_at(due, self._check)

    def _check(self) -> None:
        self._handle = None
        if not self.is_reading:
            return  # armed again by the next read
        now = self._loop.time()
        if now < min(self.since + self._idle_s, self._deadline) - EARLY_S:
            self._arm()
            return
        self.fired = _Limit.DEADLINE if now >= self._deadline - EARLY_S else _Limit.IDLE
        if self._task is not None:
            self._task.cancel()

    def expired(self) -> _Limit | None:
        """After a CancelledError: which limit cancelled the read (and uncancel), or None."""
        fired, self.fired = self.fired, None
        if fired is not None and self._task is not None:
            self._task.uncancel()
        return fired

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


async def relay(
    first: bytes,
    upstream: AsyncIterator[bytes],
    chain: Chain,
    send: Send,
    *,
    idle_timeout_s: float,
    deadline_in_s: float,
    error_event: ErrorEvent = error_event,
    before_done: Callable[[], Awaitable[None]] | None = None,
) -> StreamEnd:
    """Send `first` and then every upstream chunk through `chain` to `send`.

    `deadline_in_s` is what is left of the request's deadline; `error_event` renders
    an error in the endpoint's own shape; `before_done` runs when the chunk ending in the
    upstream's `[DONE]` (providers.base.EndsWithDone) has passed the chain, before any of
    it is sent: a client may send its next request the moment it reads `[DONE]`. Always
    closes the upstream. A cancellation (client gone, server shutdown) propagates.
    """
    loop = asyncio.get_running_loop()
    timer = ReadTimer(idle_timeout_s, loop.time() + max(0.0, deadline_in_s))
    chunk: bytes | None = first
    try:
        while chunk is not None:
            out = chain.feed(chunk)
            if out.offload is not None:  # too costly for the event loop (a dense chunk)
                out = await asyncio.to_thread(out.offload)
            if type(chunk) is EndsWithDone and before_done is not None:  # no bytes search
                await before_done()
            if out.data:
                await send(out.data)
            if out.end is not None:
                await send(error_event(out.end))
                return StreamEnd(out.end)
            timer.reading()
            try:
                chunk = await anext(upstream)
            except StopAsyncIteration:
                chunk = None
            except UpstreamFailure as failure:
                if failure.after:  # its usage, sent after its error event: booked, not sent
                    chain.learn(failure.after)
                broke = UpstreamUnavailable("The upstream failed mid-stream.")
                broke.detail = failure.detail  # for the access line, as a whole answer's
                if not failure.told_client:  # else its own error event went out already
                    await send(error_event(broke))
                return StreamEnd(broke, failure)
            except asyncio.CancelledError:
                limit = timer.expired()
                if limit is None:
                    raise
                if limit is _Limit.DEADLINE:
                    # A healthy upstream still generating: the request's own limit, not a
                    # fault of the deployment, so it does not count towards its cooldown.
                    error = UpstreamTimeout("The request reached its deadline (routing timeout_s).")
                    error.detail = "stream reached the request deadline (timeout_s)"
                    await send(error_event(error))
                    return StreamEnd(error)
                stalled = UpstreamFailure(
                    f"stream stalled: no event within {idle_timeout_s:g} s (attempt_timeout_s)",
                    is_timeout=True,
                )
                silent = UpstreamTimeout("The upstream stopped responding.")
                silent.detail = stalled.detail
                await send(error_event(silent))
                return StreamEnd(silent, stalled)
            finally:
                timer.is_reading = False
        out = chain.finish()
        if out.data:
            await send(out.data)
        if out.end is not None:
            await send(error_event(out.end))
            return StreamEnd(out.end)
        if out.later is not None:
            await send(await asyncio.to_thread(out.later))
        return StreamEnd()
    finally:
        timer.stop()
        await close_stream(upstream)
