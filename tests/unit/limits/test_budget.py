"""Budget arithmetic and the in-process backend's holds, as properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.limits.budget import Counter, Verdict, check, reserve, settle


def test_an_estimate_larger_than_the_whole_budget_is_refused_at_once() -> None:
    assert check(Counter(), 100, 101) is Verdict.TOO_LARGE
    assert check(Counter(), 100, 100) is Verdict.OK


def test_a_spent_budget_refuses_even_a_free_request() -> None:
    assert check(Counter(100, 0), 100, 0) is Verdict.EXHAUSTED
    assert check(Counter(60, 30), 100, 11) is Verdict.EXHAUSTED
    assert check(Counter(60, 30), 100, 10) is Verdict.OK


def test_a_lapsed_hold_is_not_released_twice() -> None:
    """Settling a hold the lease already dropped charges usage but frees no one else's reserve."""
    counter = Counter(0, 50)  # another request's 50 in flight
    assert settle(counter, 30, 20, is_held=False) == Counter(20, 50)
    assert settle(counter, 30, None, is_held=True) == Counter(0, 20)


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(1, 1000),
    requests=st.lists(
        st.tuples(st.integers(0, 300), st.integers(0, 100), st.booleans()), max_size=60
    ),
    order=st.randoms(use_true_random=False),
)
def test_concurrent_reservations_never_spend_past_the_budget(
    limit: int, requests: list[tuple[int, int, bool]], order: object
) -> None:
    """Reserve all, settle in any order to a true amount <= the estimate (or release):
    used never passes the limit, nothing goes negative, and nothing stays reserved."""
    counter, held = Counter(), []
    for estimate, percent, answered in requests:
        if check(counter, limit, estimate) is Verdict.OK:
            counter = reserve(counter, estimate)
            held.append((estimate, estimate * percent // 100 if answered else None))
        assert counter.used + counter.reserved <= limit
    order.shuffle(held)  # type: ignore[attr-defined]
    for estimate, actual in held:
        counter = settle(counter, estimate, actual, is_held=True)
        assert counter.used >= 0 and counter.reserved >= 0
        assert counter.used <= limit
    assert counter.reserved == 0
