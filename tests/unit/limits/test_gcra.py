"""GCRA: the burst, the exact retry-after, refunds, and the rate bound over any window."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.limits import gcra
from gateway.limits.gcra import WINDOW_MS, Bucket, adjust, decide, state_of, taken

NOW = 1_750_000_000_000


def test_a_full_bucket_passes_then_the_next_waits_one_interval() -> None:
    """60 rpm: 60 pass at once, the 61st is told to wait exactly 1 s."""
    bucket, now = Bucket(), 1_000_000
    for _ in range(60):
        state = decide(bucket, now, 60, 1)
        assert state.is_allowed
        bucket = state.bucket
    refused = decide(bucket, now, 60, 1)
    assert not refused.is_allowed and refused.retry_after_ms == 1000
    assert refused.remaining == 0 and refused.reset_ms == WINDOW_MS
    assert not decide(bucket, now + 999, 60, 1).is_allowed
    assert decide(bucket, now + 1000, 60, 1).is_allowed


def test_a_request_larger_than_the_limit_never_fits() -> None:
    """tpm 100 and a 101-token request: refused with -1 (waiting will not help)."""
    state = decide(Bucket(), 0, 100, 101)
    assert not state.is_allowed and state.retry_after_ms == -1


def test_a_refund_frees_capacity_at_once_but_never_below_empty() -> None:
    """Settling 100 reserved tokens to 10 frees 90; a refund on an empty bucket frees nothing extra."""
    state = decide(Bucket(), 0, 100, 100)
    assert state.remaining == 0
    refunded = adjust(state.bucket, 10 - 100)
    assert state_of(refunded, 0, 100) == (90, 6000)
    drained = adjust(Bucket(0, 0), -1000)
    assert state_of(drained, 0, 100) == (100, 0)
    assert decide(drained, 0, 100, 100).is_allowed
    assert not decide(decide(drained, 0, 100, 100).bucket, 0, 100, 1).is_allowed


def test_a_clock_behind_the_stamp_drains_nothing() -> None:
    """A replica whose clock lags another's sees the bucket as full as it was written."""
    state = decide(Bucket(), 10_000, 10, 10)
    assert not decide(state.bucket, 9_000, 10, 1).is_allowed


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(1, 50),
    steps=st.lists(st.tuples(st.integers(0, 5_000), st.integers(1, 10)), min_size=1, max_size=80),
)
def test_never_more_than_the_limit_plus_the_refill_in_any_window(
    limit: int, steps: list[tuple[int, int]]
) -> None:
    """In any span of T ms, what passed is at most limit + limit·T/60 s (the GCRA bound),
    remaining stays in [0, limit], and a refused request passes exactly at its retry-after."""
    bucket, now, passed = Bucket(), 0, []
    for gap, amount in steps:
        now += gap
        state = decide(bucket, now, limit, amount)
        assert 0 <= state.remaining <= limit
        if state.is_allowed:
            bucket = state.bucket
            passed.append((now, amount))
        elif state.retry_after_ms > 0:
            assert decide(bucket, now + state.retry_after_ms, limit, amount).is_allowed
            assert not decide(bucket, now + state.retry_after_ms - 1, limit, amount).is_allowed
    for i, (start, _) in enumerate(passed):
        for j in range(i, len(passed)):
            span = passed[j][0] - start
            total = sum(a for _, a in passed[i : j + 1])
            assert total * WINDOW_MS <= limit * WINDOW_MS + limit * span


@settings(max_examples=500, deadline=None)
@given(
    stamp=st.integers(0, 200_000),
    level=st.integers(-(10**7), 10**7),
    now=st.integers(0, 200_000),
    limit=st.integers(1, 200),
    amount=st.integers(0, 250),
)
def test_taken_is_decide_in_one_call(
    stamp: int, level: int, now: int, limit: int, amount: int
) -> None:
    """The hot path's one call allows exactly what decide allows, at the same new level."""
    state = decide(Bucket(stamp, level), now, limit, amount)
    found = taken(stamp, level, now, limit, amount)
    assert found == (state.bucket.level if state.is_allowed else None)


@given(
    stamp=st.integers(0, 200_000),
    level=st.integers(-(10**9), 10**9),
    now=st.integers(0, 200_000),
    limit=st.integers(1, 200),
)
def test_a_level_reads_between_empty_and_full_and_drains_within_a_minute(
    stamp: int, level: int, now: int, limit: int
) -> None:
    """Over-full (billed past its estimate, or a limit tightened) reads as full: no wait
    and no reset header is ever longer than a minute; under-full (a refund) as empty."""
    read = gcra.drained(stamp, level, now, limit)
    assert 0 <= read <= WINDOW_MS * limit
    remaining, reset_ms = gcra.view(read, limit)
    assert 0 <= remaining <= limit and 0 <= reset_ms <= WINDOW_MS
    assert gcra.wait_ms(read, limit, 1) <= WINDOW_MS
    assert gcra.drained(stamp, level, max(now, stamp) + WINDOW_MS, limit) == 0


def test_a_tightened_limit_counts_at_most_one_minute_of_use() -> None:
    """1,000 requests under rpm 1000, then rpm 3: refused for one minute, not 333."""
    level = 1000 * WINDOW_MS
    assert gcra.taken(NOW, level, NOW, 3, 1) is None
    assert gcra.wait_ms(gcra.drained(NOW, level, NOW, 3), 3, 1) == WINDOW_MS // 3
    assert gcra.taken(NOW, level, NOW + WINDOW_MS // 3, 3, 1) == 3 * WINDOW_MS
