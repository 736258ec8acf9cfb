"""The token endpoint's guards: the sliding window, the failure log, verified pairs, slots."""

from __future__ import annotations

import asyncio

import pytest

from gateway.auth.login_guard import (
    MAX_TRACKED_KEYS,
    FailureLog,
    LoginBusy,
    LoginGuard,
    LoginLimits,
    VerifiedSecrets,
    retry_after_s,
    source_of,
    with_failure,
)
from tests.support.clock import ManualClock


@pytest.mark.parametrize(
    ("failures", "limit", "now", "expected"),
    [
        ((), 3, 100.0, None),
        ((90.0, 95.0), 3, 100.0, None),  # under the limit
        ((90.0, 95.0, 99.0), 3, 100.0, 50.0),  # full: wait until 90 leaves (90 + 60 - 100)
        ((30.0, 90.0, 95.0), 3, 100.0, None),  # 30 has left the window
        ((40.0, 90.0, 95.0), 3, 100.0, None),  # 40 + 60 == 100: gone
        ((41.0, 90.0, 95.0), 3, 100.0, 1.0),  # 41 leaves in 1 s
        ((80.0, 90.0, 95.0, 99.0), 3, 100.0, 50.0),  # over: the 3rd newest decides
        ((99.0,), 1, 100.0, 59.0),
    ],
)
def test_retry_after_is_when_enough_failures_have_left_the_window(
    failures, limit, now, expected
) -> None:
    """Allowed while fewer than `limit` failures are in the last 60 s; else the wait."""
    assert retry_after_s(failures, limit, 60.0, now) == expected


def test_with_failure_keeps_only_the_newest_limit_within_the_window() -> None:
    """The stored times never grow beyond the limit, and drop what left the window."""
    assert with_failure((1.0, 50.0, 90.0, 95.0), 3, 60.0, 100.0) == (90.0, 95.0, 100.0)
    assert with_failure((), 3, 60.0, 100.0) == (100.0,)


def test_failure_log_refuses_after_the_limit_and_forgets_old_keys() -> None:
    """The limit-th failure refuses the next attempt; the key count stays bounded."""
    log = FailureLog(limit=2, window_s=60.0)
    log.record("a", 0.0)
    assert log.retry_after_s("a", 1.0) is None
    log.record("a", 1.0)
    assert log.retry_after_s("a", 2.0) == 58.0
    assert log.retry_after_s("a", 60.5) is None  # the first left the window
    assert log.retry_after_s("b", 2.0) is None
    for i in range(MAX_TRACKED_KEYS + 5):
        log.record(f"k{i}", 3.0)
    assert len(log._times) == MAX_TRACKED_KEYS


def test_verified_pairs_expire_and_revocation_forgets_them() -> None:
    """A pair is known for ttl seconds; a wrong secret never; forget_client drops it."""
    clock = ManualClock()
    pairs = VerifiedSecrets(60.0, clock=clock)
    pairs.remember("c-1", "s3cret")
    pairs.remember("c-2", "other")
    assert pairs.has("c-1", "s3cret")
    assert not pairs.has("c-1", "wrong")
    assert not pairs.has("c-1s", "3cret")  # the separator keeps pairs apart
    clock.now += 61
    assert not pairs.has("c-1", "s3cret")
    pairs.remember("c-1", "s3cret")
    pairs.remember("c-2", "other")
    pairs.forget_client("c-1")
    assert not pairs.has("c-1", "s3cret")
    assert pairs.has("c-2", "other")


def test_verified_pairs_are_bounded() -> None:
    """Beyond max_pairs the oldest pair is dropped."""
    pairs = VerifiedSecrets(60.0, max_pairs=2)
    for i in range(3):
        pairs.remember(f"c-{i}", "s")
    assert not pairs.has("c-0", "s")
    assert pairs.has("c-1", "s") and pairs.has("c-2", "s")


def test_failures_only_throttle_the_address_that_made_them() -> None:
    """Failures against c-victim from 10.0.0.66 limit that address (for c-victim after 3, for
    any id after 5), never c-victim from another address: client ids are public."""
    clock = ManualClock()
    guard = LoginGuard(LoginLimits(failures_per_client=3, failures_per_address=5), clock=clock)
    for _ in range(3):
        guard.record_failure("c-victim", "10.0.0.66")
    assert guard.retry_after_s("c-victim", "10.0.0.66") is not None  # the pair is limited
    assert guard.retry_after_s("c-other", "10.0.0.66") is None  # the address not yet
    assert guard.retry_after_s("c-victim", "10.0.0.1") is None  # the id never by itself
    for _ in range(2):
        guard.record_failure("c-victim", "10.0.0.66")
    assert guard.retry_after_s("c-other", "10.0.0.66") is not None  # the address is limited
    assert guard.retry_after_s("c-victim", "10.0.0.1") is None
    assert guard.retry_after_s("c-other", "10.0.0.1") is None
    clock.now += 60
    assert guard.retry_after_s("c-victim", "10.0.0.66") is None


def test_failures_spread_over_many_addresses_never_lock_the_client_out() -> None:
    """Ten addresses with nine failures each for c-victim: c-victim from an eleventh still tries."""
    guard = LoginGuard(
        LoginLimits(failures_per_client=10, failures_per_address=30), clock=ManualClock()
    )
    for i in range(10):
        for _ in range(9):
            guard.record_failure("c-victim", f"10.0.1.{i}")
    assert guard.retry_after_s("c-victim", "10.0.2.1") is None


def test_long_claimed_client_ids_are_keyed_by_their_start() -> None:
    """A megabyte-long claimed id costs a small key; ids alike in their first 128 share it."""
    guard = LoginGuard(
        LoginLimits(failures_per_client=1, failures_per_address=100), clock=ManualClock()
    )
    guard.record_failure("x" * 1_000_000, "10.0.0.9")
    assert guard.retry_after_s("x" * 200, "10.0.0.9") is not None
    assert all(len(key[0]) <= 128 for key in guard._by_client._times)


async def test_slots_bound_concurrent_checks_and_time_out() -> None:
    """With every slot held, the next waits `wait_s` and gets LoginBusy; a freed slot is taken."""
    guard = LoginGuard(LoginLimits(concurrency=2, wait_s=0.05))
    async with guard.slot(), guard.slot():
        with pytest.raises(LoginBusy):
            async with guard.slot():
                pass
    async with guard.slot():
        pass
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with guard.slot():
            held.set()
            await release.wait()

    tasks = [asyncio.create_task(holder()) for _ in range(2)]
    await held.wait()
    asyncio.get_running_loop().call_later(0.01, release.set)
    async with guard.slot():  # waits for a holder to finish, within wait_s
        pass
    await asyncio.gather(*tasks)


def test_an_ipv6_source_counts_as_its_slash_64() -> None:
    """One host holds a whole /64: failures from many of its addresses add up (one key per
    address let an attacker stay under every limit); another /64 is another source."""
    guard = LoginGuard(LoginLimits(failures_per_address=5), clock=ManualClock())
    for i in range(5):
        guard.record_failure(f"c-{i}", f"2001:db8:1:2::{i + 1:x}")
    assert guard.retry_after_s("c-new", "2001:db8:1:2:ffff:ffff:ffff:ffff") is not None
    assert guard.retry_after_s("c-new", "2001:db8:1:3::1") is None


@pytest.mark.parametrize(
    ("address", "source"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::9", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:10.0.0.1", "10.0.0.1"),  # a dual-stack socket's IPv4 peer
        ("unix:/run/gw.sock", "unix:/run/gw.sock"),  # not an address: as it is
        ("", ""),
    ],
)
def test_source_of(address: str, source: str) -> None:
    assert source_of(address) == source
