"""The stream loop (gateway/stream/relay.py) against scripted upstreams: one write per
read, the idle and deadline limits, mid-stream failures, and the upstream always closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from gateway.providers.base import UpstreamFailure
from gateway.stream.relay import relay
from gateway.stream.steps import Chain, Emit
from gateway.stream.usage_observer import UsageObserver

FIRST, SECOND, DONE = b"data: 1\n\n", b"data: 2\n\ndata: 3\n\n", b"data: [DONE]\n\n"


class Scripted:
    """An upstream iterator: each entry is a chunk, a pause (float seconds) or an error."""

    def __init__(self, *script: bytes | float | Exception) -> None:
        self.script = list(script)
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        while self.script:
            item = self.script.pop(0)
            if isinstance(item, float):
                await asyncio.sleep(item)
                continue
            if isinstance(item, Exception):
                raise item
            return item
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


class Sent:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def __call__(self, data: bytes) -> None:
        self.writes.append(data)


def plain() -> Chain:
    # not asked for usage: nothing is held back, so each read is one write
    return Chain([UsageObserver("chat", client_wants_usage=False, body={}, model="m")])


async def test_each_upstream_read_is_one_client_write() -> None:
    upstream, sent = Scripted(SECOND, DONE), Sent()
    end = await relay(FIRST, upstream, plain(), sent, idle_timeout_s=5, deadline_in_s=5)
    assert end.error is None and end.failure is None
    assert sent.writes == [FIRST, SECOND, DONE]
    assert upstream.closed


async def test_a_stalled_upstream_ends_with_a_timeout_event_and_counts_as_its_failure() -> None:
    upstream, sent = Scripted(SECOND, 1.0, DONE), Sent()
    end = await relay(FIRST, upstream, plain(), sent, idle_timeout_s=0.1, deadline_in_s=5)
    assert end.error is not None and end.error.code == "upstream_timeout"
    assert end.failure is not None and end.failure.is_timeout
    assert sent.writes[:2] == [FIRST, SECOND]
    assert orjson.loads(sent.writes[2][len(b"data: ") :])["error"]["code"] == "upstream_timeout"
    assert upstream.closed


async def test_slow_but_steady_reads_are_not_idle() -> None:
    """The idle limit is per read: many reads each under it never trip it."""
    upstream, sent = Scripted(0.04, SECOND, 0.04, SECOND, 0.04, DONE), Sent()
    end = await relay(FIRST, upstream, plain(), sent, idle_timeout_s=0.1, deadline_in_s=5)
    assert end.error is None and sent.writes[-1] == DONE


async def test_the_request_deadline_cuts_a_healthy_stream_without_blaming_it() -> None:
    upstream, sent = Scripted(*[x for _ in range(20) for x in (0.03, SECOND)]), Sent()
    end = await relay(FIRST, upstream, plain(), sent, idle_timeout_s=1, deadline_in_s=0.2)
    assert end.error is not None and end.error.code == "upstream_timeout"
    assert "deadline" in end.error.message
    assert end.failure is None
    assert upstream.closed


async def test_time_spent_sending_to_a_slow_client_is_not_upstream_idle_time() -> None:
    async def slow_client(data: bytes) -> None:
        await asyncio.sleep(0.15)

    upstream = Scripted(SECOND, DONE)
    end = await relay(FIRST, upstream, plain(), slow_client, idle_timeout_s=0.1, deadline_in_s=5)
    assert end.error is None


async def test_a_broken_upstream_ends_with_an_error_event() -> None:
    broken = UpstreamFailure("reset")
    upstream, sent = Scripted(SECOND, broken), Sent()
    end = await relay(FIRST, upstream, plain(), sent, idle_timeout_s=5, deadline_in_s=5)
    assert end.failure is broken and end.error is not None
    assert end.error.code == "upstream_unavailable"
    assert b'"upstream_unavailable"' in sent.writes[-1]
    assert upstream.closed


async def test_a_step_that_ends_the_stream_stops_reading() -> None:
    from gateway.errors import InvalidRequest

    class Stop:
        def feed(self, chunk: bytes) -> Emit:
            return Emit(b"", InvalidRequest("no")) if b"2" in chunk else Emit(chunk)

        def finish(self) -> Emit:
            return Emit()

    upstream, sent = Scripted(SECOND, DONE), Sent()
    end = await relay(FIRST, upstream, Chain([Stop()]), sent, idle_timeout_s=5, deadline_in_s=5)
    assert end.error is not None and end.failure is None
    assert sent.writes[0] == FIRST and b'"no"' in sent.writes[1] and len(sent.writes) == 2
    assert upstream.closed and upstream.script == [DONE]


async def test_a_cancellation_goes_through_and_closes_the_upstream() -> None:
    upstream, sent = Scripted(SECOND, 5.0, DONE), Sent()
    task = asyncio.create_task(
        relay(FIRST, upstream, plain(), sent, idle_timeout_s=10, deadline_in_s=10)
    )
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert upstream.closed and sent.writes == [FIRST, SECOND]


async def test_a_steps_deferred_work_runs_off_the_loop_and_is_sent_last() -> None:
    """What a last step's finish() defers (a tokenizer count) runs on a thread, and its
    bytes are the stream's last write."""
    import threading

    ran_on: list[threading.Thread] = []

    class Deferring:
        def feed(self, chunk: bytes) -> Emit:
            return Emit(chunk)

        def finish(self) -> Emit:
            def work() -> bytes:
                ran_on.append(threading.current_thread())
                return b"data: usage\n\n" + DONE

            return Emit(later=work)

    upstream, sent = Scripted(SECOND), Sent()
    end = await relay(
        FIRST, upstream, Chain([Deferring()]), sent, idle_timeout_s=5, deadline_in_s=5
    )
    assert end.error is None
    assert sent.writes == [FIRST, SECOND, b"data: usage\n\n" + DONE]
    assert ran_on and ran_on[0] is not threading.main_thread()
