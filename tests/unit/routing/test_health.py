"""Cooldown: after `failure_threshold` consecutive failures, for cooldown_s or retry-after."""

from gateway.routing.health import HEALTHY, record_failure, record_success


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
