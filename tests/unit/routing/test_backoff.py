"""Waiting: the backoff before going back to a deployment, and the retry-after a client is told."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.routing.backoff import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    back_at,
    backoff_delay,
    retry_after_hint,
    retry_wait,
)
from gateway.routing.health import RETRY_AFTER_CAP_S

unit = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
failures = st.integers(min_value=1, max_value=10_000)
seconds = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)


@pytest.mark.parametrize(
    ("failures", "rand", "expected"),
    [
        (0, 0.5, 0.0),  # failing over to a fresh deployment: no pause
        (1, 0.0, 0.05),
        (1, 0.5, 0.075),
        (2, 0.0, 0.1),
        (3, 0.0, 0.2),
        (5, 0.0, 0.8),
        (6, 0.0, 1.0),  # 3.2 s capped at 2 s, half fixed
        (1000, 0.0, 1.0),  # no float overflow
    ],
)
def test_backoff_delay_table(failures, rand, expected):
    assert backoff_delay(failures, rand) == pytest.approx(expected)


@settings(deadline=None)  # a busy shared machine must not fail a rule
@given(failures, unit)
def test_backoff_stays_between_half_and_all_of_the_capped_doubling(n, rand):
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** min(n - 1, 60))
    delay = backoff_delay(n, rand)
    assert ceiling / 2 <= delay < ceiling or math.isclose(delay, ceiling)
    assert delay <= BACKOFF_CAP_S


@settings(deadline=None)  # a busy shared machine must not fail a rule
@given(failures, unit)
def test_backoff_never_shrinks_with_more_failures_at_the_same_jitter(n, rand):
    assert backoff_delay(n + 1, rand) >= backoff_delay(n, rand)


@settings(deadline=None)  # a busy shared machine must not fail a rule
@given(failures, unit, st.one_of(st.none(), seconds), seconds, seconds)
def test_a_wait_is_taken_only_when_it_ends_before_the_deadline(n, rand, asked, now, budget):
    deadline = now + budget
    wait = retry_wait(n, rand, retry_after_s=asked, now=now, deadline=deadline)
    least = max(backoff_delay(n, rand), min(asked or 0.0, RETRY_AFTER_CAP_S))
    if wait is None:
        assert now + least >= deadline
    else:
        assert wait == least  # the backoff, or the upstream's longer (bounded) Retry-After
        assert now + wait < deadline


def test_a_short_retry_after_is_honoured():
    assert retry_wait(1, 0.0, retry_after_s=1.5, now=0.0, deadline=10.0) == 1.5


def test_a_retry_after_shorter_than_the_backoff_does_not_shorten_it():
    assert retry_wait(3, 0.0, retry_after_s=0.01, now=0.0, deadline=10.0) == pytest.approx(0.2)


def test_a_retry_after_past_the_deadline_stops_the_request():
    assert retry_wait(1, 0.0, retry_after_s=30.0, now=0.0, deadline=10.0) is None


def test_a_backoff_past_the_deadline_stops_the_request():
    assert retry_wait(1, 0.0, retry_after_s=None, now=9.96, deadline=10.0) is None
    assert retry_wait(1, 0.0, retry_after_s=None, now=9.94, deadline=10.0) == pytest.approx(0.05)


def test_no_wait_for_a_deployment_not_yet_failed_even_with_a_retry_after():
    assert retry_wait(0, 0.9, retry_after_s=30.0, now=0.0, deadline=10.0) == 0.0


@pytest.mark.parametrize(
    ("cooling_until", "asked_until", "expected"),
    [
        (0.0, None, None),  # healthy, nothing asked
        (5.0, None, None),  # cooldown already over
        (20.0, None, 20.0),
        (0.0, 15.0, 15.0),  # not cooling, but its upstream asked for a pause
        (20.0, 15.0, 20.0),  # the later of the two
        (12.0, 30.0, 30.0),
        (0.0, 9.0, None),  # the asked pause is over
    ],
)
def test_back_at(cooling_until, asked_until, expected):
    assert back_at(cooling_until, asked_until, now=10.0) == expected


@pytest.mark.parametrize(
    ("back", "expected"),
    [
        ([], None),
        ([None], None),  # may answer now: no hint
        ([40.0, None], None),  # one deployment may answer now
        ([40.0], 30),
        ([40.0, 12.5], 3),  # the soonest, rounded up
        ([10.2], 1),
        ([10.0], None),  # back already
        ([10.0001], 1),  # never 0: `retry-after: 0` would invite a hammering
    ],
)
def test_retry_after_hint(back, expected):
    assert retry_after_hint(back, now=10.0) == expected


@settings(deadline=None)  # a busy shared machine must not fail a rule
@given(st.lists(st.one_of(st.none(), seconds), max_size=6), seconds)
def test_the_hint_is_the_soonest_known_return_or_none(back, now):
    hint = retry_after_hint(back, now)
    if not back or any(b is None or b <= now for b in back):
        assert hint is None
    else:
        assert hint is not None and hint >= 1
        assert hint == max(1, math.ceil(min(back) - now))  # type: ignore[type-var]
