"""The drain's state and the rule that ends it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.drain import DRAIN_STATE_KEY, Drain, drain_is_over, is_draining, shutting_down


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
