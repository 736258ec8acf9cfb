"""GCRA: the burst, the exact retry-after, refunds, and the rate bound over any window."""

from __future__ import annotations

from hypothesis import example, given, settings
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


def test_a_late_refund_gives_back_only_what_is_left_of_its_reservation() -> None:
    """The probe's case: tpm 3,000; A reserves 2,608 at 0 and uses 15, settling at 15 s;
    B takes 1,010 at 14.5 s. A's refund is bounded by what is left of its reservation
    (2,608 - 750 drained), so B's tokens stay in the bucket and C's 2,708 wait."""
    limit = 3_000
    a = decide(Bucket(), 0, limit, 2_608)
    b = decide(a.bucket, 14_500, limit, 1_010)
    assert b.is_allowed
    delta = gcra.settled_delta(2_608, 15, 15_000, limit)
    assert delta == -(2_608 - 750)
    settled = adjust(b.bucket, delta)
    c = decide(settled, 15_300, limit, 2_708)
    assert not c.is_allowed and c.retry_after_ms > 10_000
    unbounded = adjust(b.bucket, 15 - 2_608)  # the old settle: B's tokens refunded too
    assert decide(unbounded, 15_300, limit, 2_708).is_allowed


@given(
    reserved=st.integers(0, 10**6),
    used=st.integers(0, 10**6),
    elapsed=st.integers(-1_000, 10 * WINDOW_MS),
    limit=st.integers(1, 10**6),
)
def test_a_settle_never_refunds_more_than_is_left_of_the_reservation(
    reserved: int, used: int, elapsed: int, limit: int
) -> None:
    delta = gcra.settled_delta(reserved, used, elapsed, limit)
    drained_units = -(-max(0, elapsed) * limit // WINDOW_MS)
    if used >= reserved:
        assert delta == used - reserved  # a charge is never bounded
    else:
        assert used - reserved <= delta <= 0  # never more than the unused part
        assert -delta <= max(0, reserved - drained_units)  # nor than is left of it
        if elapsed <= 0:
            assert delta == used - reserved  # settled at once: the whole refund
    assert gcra.settled_delta(reserved, used, None, limit) == used - reserved


@settings(max_examples=300)
@example(  # the probe's: B takes 1,010 while A holds 2,608, A refunds all but 15
    limit=3_000, others=[(14_500, 500), (14_500, 500), (14_500, 10)], reserved=2_608, used=15,
    held_ms=15_000,
)  # fmt: skip
@given(
    limit=st.integers(1, 5_000),
    others=st.lists(st.tuples(st.integers(0, 30_000), st.integers(1, 500)), max_size=20),
    reserved=st.integers(1, 5_000),
    used=st.integers(0, 5_000),
    held_ms=st.integers(0, 120_000),
)
def test_a_refund_never_lets_more_than_a_bucket_and_its_refill_through(
    limit: int, others: list[tuple[int, int]], reserved: int, used: int, held_ms: int
) -> None:
    """Over any run (one reservation held `held_ms`, others taking tokens meanwhile and
    after), what passed between any two instants never exceeds a full bucket plus what
    drained between them,
    counting the reservation at what it truly used (within its estimate: past it, the
    overrun is the estimate's error, which fills the bucket at most)."""
    used = min(used, reserved)
    first = decide(Bucket(), 0, limit, reserved)
    if not first.is_allowed:
        return
    bucket, passed = first.bucket, [(0, used)]  # its true use, counted at its start
    settle, greedy = -1, 0  # the settle; a request for all that fits just after it
    timeline = sorted([*others, (held_ms, settle), (held_ms + 1, greedy)])
    for at, amount in timeline:
        if amount == settle:
            bucket = adjust(bucket, gcra.settled_delta(reserved, used, held_ms, limit))
            continue
        if amount == greedy:
            amount = state_of(bucket, at, limit)[0]
            if amount == 0:
                continue
        step = decide(bucket, at, limit, amount)
        if step.is_allowed:
            bucket = step.bucket
            passed.append((at, amount))
    for start, _ in passed:
        for end, _ in passed:
            if end >= start:
                window = sum(units for at, units in passed if start <= at <= end)
                refill = -(-(end - start) * limit // WINDOW_MS)
                assert window <= limit + refill, (start, end)  # a bucket and its refill
