"""The bound on ledger rows of callers with no verified token (usage/anonymous_rows.py):
per address, BURST at once then PER_MINUTE a minute; verified callers unbounded."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from gateway.auth.principal import Principal
from gateway.context import RequestContext
from gateway.usage.anonymous_rows import (
    ADDRESSES_KEPT,
    BURST,
    PER_MINUTE,
    AnonymousRowBound,
    RowBuckets,
)


@given(st.lists(st.floats(min_value=0, max_value=600, allow_nan=False), min_size=1, max_size=400))
def test_never_more_than_the_burst_plus_the_refill(times):
    """Over any run of requests, an address gets at most BURST + PER_MINUTE per minute
    elapsed rows; and a quiet address always gets its first."""
    buckets = RowBuckets()
    times = sorted(times)
    allowed = sum(buckets.allows("a", t) for t in times)
    elapsed = times[-1] - times[0]
    assert allowed <= BURST + elapsed * PER_MINUTE / 60 + 1e-9
    assert RowBuckets().allows("a", times[0])


def test_a_flood_gets_the_burst_then_the_rate():
    buckets = RowBuckets()
    at_once = sum(buckets.allows("a", 0.0) for _ in range(1_000))
    assert at_once == BURST
    later = sum(buckets.allows("a", 60.0) for _ in range(1_000))  # a minute on
    assert later == PER_MINUTE
    assert buckets.allows("b", 60.0)  # another address has its own


def test_the_addresses_kept_are_bounded():
    buckets = RowBuckets()
    for n in range(ADDRESSES_KEPT * 2):
        buckets.allows(f"10.0.{n}", 0.0)
    assert len(buckets._buckets) <= ADDRESSES_KEPT


def context(principal: Principal | None, peer: str = "192.0.2.1") -> RequestContext:
    ctx = RequestContext("req", "chat", peer=peer)
    ctx.principal = principal
    return ctx


def test_verified_callers_are_always_recorded_and_the_rest_counted(caplog):
    stored: list[RequestContext] = []
    bound = AnonymousRowBound(stored.append, clock=lambda: 0.0)
    principal = Principal("t", "s", None, frozenset(), "issuer", 0.0)
    for _ in range(BURST * 3):
        bound.record(context(principal))
    assert len(stored) == BURST * 3
    with caplog.at_level(logging.WARNING, "gateway.ledger"):
        for _ in range(BURST + 10):
            bound.record(context(None))
    assert len(stored) == BURST * 4
    assert bound.unrecorded == 10
    warnings = [r for r in caplog.records if "not stored" in r.getMessage()]
    assert len(warnings) == 1  # once a minute, not once a request
