"""Cooldown: after `failure_threshold` consecutive failures, for cooldown_s or retry-after."""

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.routing.health import HEALTHY, RETRY_AFTER_CAP_S, record_failure, record_success


def fail(health, now=0.0, retry_after=None):
    return record_failure(
        health, now, failure_threshold=3, cooldown_s=30.0, retry_after_s=retry_after
    )


def test_failures_below_the_threshold_do_not_cool_down():
    health = fail(fail(HEALTHY))
    assert health.consecutive_failures == 2
    assert not health.is_cooling(0.0)


def test_the_threshold_failure_starts_a_cooldown_of_cooldown_s():
    health = fail(fail(fail(HEALTHY)), now=10.0)
    assert health.is_cooling(39.9)
    assert not health.is_cooling(40.0)


def test_a_longer_retry_after_wins():
    health = fail(fail(fail(HEALTHY)), now=0.0, retry_after=120.0)
    assert health.is_cooling(119.0)
    assert not health.is_cooling(120.0)


def test_a_shorter_retry_after_does_not_shorten_the_cooldown():
    health = fail(fail(fail(HEALTHY)), now=0.0, retry_after=1.0)
    assert health.is_cooling(29.0)


def test_success_resets_the_count():
    health = record_success(fail(fail(HEALTHY)))
    assert fail(health).consecutive_failures == 1


events = st.lists(
    st.one_of(
        st.just("ok"),
        st.tuples(
            st.floats(min_value=0.0, max_value=5.0),  # time since the previous event
            st.one_of(st.none(), st.floats(min_value=0.0, max_value=100.0)),  # retry-after
        ),
    ),
    max_size=20,
)


@settings(deadline=None)  # a busy shared machine must not fail a rule
@given(events, st.integers(min_value=1, max_value=4))
def test_health_follows_the_failures_since_the_last_success(history, threshold):
    """The count is the failures since the last success; a cooldown starts only at the
    threshold, lasts at least cooldown_s (or the retry-after) and never gets shorter."""
    health, now, streak = HEALTHY, 0.0, 0
    for event in history:
        if event == "ok":
            health, streak = record_success(health), 0
            assert health == HEALTHY
            continue
        step, retry_after = event
        now += step
        before = health
        health = record_failure(
            health, now, failure_threshold=threshold, cooldown_s=30.0, retry_after_s=retry_after
        )
        streak += 1
        assert health.consecutive_failures == streak
        assert health.cooling_until >= before.cooling_until
        if streak < threshold:
            assert health.cooling_until == before.cooling_until
        else:
            assert health.cooling_until >= now + max(30.0, retry_after or 0.0)
            assert health.is_cooling(now)


@settings(deadline=None)
@given(
    st.floats(min_value=0.0, max_value=1e9),  # retry-after, seconds: up to ~30 years
    st.floats(min_value=0.1, max_value=1000.0),  # cooldown_s
    st.floats(min_value=0.0, max_value=1e6),  # now
)
def test_an_upstreams_retry_after_cools_for_at_most_the_cap(retry_after, cooldown, now):
    """cooldown_s, or the retry-after up to RETRY_AFTER_CAP_S, whichever is longer:
    `retry-after: 86400` no longer sidelines a deployment for a day."""
    health = record_failure(
        HEALTHY, now, failure_threshold=1, cooldown_s=cooldown, retry_after_s=retry_after
    )
    expected = max(cooldown, min(retry_after, RETRY_AFTER_CAP_S))
    assert health.cooling_until == now + expected
    assert not health.is_cooling(now + max(cooldown, RETRY_AFTER_CAP_S))
