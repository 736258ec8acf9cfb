"""The drain's state and the rule that ends it."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from gateway.drain import (
    DRAIN_STATE_KEY,
    Drain,
    drain_is_over,
    drain_of,
    is_draining,
    shutdown_cut,
    shutting_down,
)


def test_drain_begins_once():
    """The first begin counts; a second signal does not move the start."""
    drain = Drain()
    assert not drain.is_draining
    assert drain.begin(10.0)
    assert not drain.begin(20.0)
    assert drain.began_at == 10.0 and drain.is_draining


def test_is_draining_reads_the_request_state():
    """Only a Drain that has begun, under its key, means draining; no state means not."""
    begun = Drain()
    begun.begin(1.0)
    assert is_draining({DRAIN_STATE_KEY: begun})
    assert not is_draining({DRAIN_STATE_KEY: Drain()})
    assert not is_draining({DRAIN_STATE_KEY: True})  # not a Drain: not ours
    assert not is_draining({})
    assert not is_draining(None)


@given(
    elapsed=st.floats(min_value=0, max_value=1e6),
    busy=st.integers(min_value=0, max_value=10_000),
    grace=st.floats(min_value=0.001, max_value=1e5),
)
def test_drain_ends_when_idle_or_out_of_grace(elapsed, busy, grace):
    """Listening stops exactly when nothing is under way or the grace is spent."""
    assert drain_is_over(elapsed, busy, grace) is (busy == 0 or elapsed >= grace)


def test_shutting_down_is_a_retryable_openai_error():
    """503 api_error server_shutting_down, with connection: close so a retry goes elsewhere."""
    error = shutting_down()
    assert error.status == 503
    assert error.body()["error"]["code"] == "server_shutting_down"
    assert error.headers == {"retry-after": "0", "connection": "close"}


async def test_the_cut_hands_back_the_requests_under_way_once():
    """Out of grace: the tracked requests come back to be cancelled, once; untracked
    (finished) ones do not, and from then on the drain says it is cut."""
    drain = Drain()
    running = asyncio.get_running_loop().create_future()
    under_way = asyncio.ensure_future(running)
    finished = asyncio.ensure_future(asyncio.sleep(0))
    drain.track(under_way)
    drain.track(finished)
    drain.untrack(finished)
    assert not drain.is_cut
    assert drain.cut(5.0) == (under_way,)
    assert drain.is_cut and drain.cut_at == 5.0
    assert drain.cut(6.0) == ()
    assert drain.cut_at == 5.0
    under_way.cancel()
    await finished


def test_drain_of_reads_the_request_state():
    drain = Drain()
    assert drain_of({DRAIN_STATE_KEY: drain}) is drain
    assert drain_of({DRAIN_STATE_KEY: True}) is None
    assert drain_of(None) is None


def test_a_shutdown_cut_is_a_503_saying_the_gateway_is_shutting_down():
    """The error a cut request (or its stream's error event) carries."""
    error = shutdown_cut()
    assert (error.status, error.type, error.code) == (503, "api_error", "server_shutting_down")
    assert "shutting down" in error.message
