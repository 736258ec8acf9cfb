"""Redis settles leave the response path: queued, sent by one drainer as many per round
trip as have gathered, landed before close, and counted when Redis cannot take them."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from typing import Any

import pytest

from gateway.limits import redis_backend
from gateway.limits.backend import BackendUnavailable, Hold
from gateway.limits.plan import Actual, Estimate, Plan, build_plan
from gateway.limits.redis_backend import RIDE_ALONG_MAX, RedisBackend
from gateway.limits.resp import Command, parse
from gateway.policy.compiled import Budget, BudgetPeriod, TeamRules
from gateway.policy.schema import LimitsSpec


def team(concurrency: int | None = 1000) -> TeamRules:
    """A day budget, rpm, tpm and (unless None) a concurrency limit: a settle that frees a
    slot is written at once; one without waits for a reserve to ride along with."""
    return TeamRules(
        f"settle-{uuid.uuid4().hex[:8]}",
        True,
        frozenset(),
        budgets=(Budget(BudgetPeriod.DAY, 10**9, None),),
        limits=LimitsSpec(rpm=10**6, tpm=10**9, concurrency=concurrency),
    )


async def reserved(backend: RedisBackend, plan: Plan, n: int, now: int) -> list[Hold]:
    await backend.seed(plan.team, tuple((c, 0) for c in plan.budgets))
    holds = []
    for i in range(n):
        hold = await backend.try_reserve(plan, f"h{i}", now)
        assert isinstance(hold, Hold)
        holds.append(hold)
    return holds


def unreachable() -> RedisBackend:
    """A backend whose Redis is gone: a port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return RedisBackend.from_url(f"redis://127.0.0.1:{port}")


def sha_of(command: Command) -> str:
    """The script an EVALSHA command calls, framed already (RESP) or not."""
    parts = parse(command, 0)[0] if isinstance(command, bytes) else command
    sha = parts[1]
    return sha.decode() if isinstance(sha, bytes) else str(sha)


def recording(backend: RedisBackend) -> list[list[str]]:
    """The commands of each write the fast connection makes on its live link (their
    scripts' shas): every write of a test that reserved before it records."""
    assert backend._fast is not None
    writes: list[list[str]] = []
    send = backend._fast.send_now

    def record(commands: list[Command]) -> list[asyncio.Future[Any]] | None:
        futures = send(commands)
        if futures is not None:
            writes.append([sha_of(c) for c in commands])
        return futures

    backend._fast.send_now = record  # type: ignore[method-assign]
    return writes


async def test_settles_of_one_loop_turn_go_in_one_batch_and_all_land(redis_url: str) -> None:
    """Settles that free no slot (those that do are written one by one, at once)."""
    backend = RedisBackend.from_url(redis_url)
    now = int(time.time() * 1000)
    plan = build_plan(team(concurrency=None), "u", Estimate(100, 0), now)
    try:
        holds = await reserved(backend, plan, 30, now)
        writes = recording(backend)
        for i, hold in enumerate(holds):
            backend.settle(hold, Actual(i, 0) if i % 2 else None)
        await backend.flush()
        assert [len(w) for w in writes] == [30]  # one write, one round trip
        snap = await backend.snapshot(plan, now)
        assert snap.budgets[0] is not None
        assert (snap.budgets[0].used, snap.budgets[0].reserved) == (sum(range(1, 30, 2)), 0)
        assert backend.lost_settles == 0
    finally:
        await backend.close()


async def test_settles_queued_at_close_still_land(redis_url: str) -> None:
    now = int(time.time() * 1000)
    plan = build_plan(team(), "u", Estimate(100, 0), now)
    backend = RedisBackend.from_url(redis_url)
    holds = await reserved(backend, plan, 3, now)
    for hold in holds:
        backend.settle(hold, Actual(7, 0))
    await backend.close()
    fresh = RedisBackend.from_url(redis_url)
    try:
        snap = await fresh.snapshot(plan, now)
        assert snap.budgets[0] is not None
        assert (snap.budgets[0].used, snap.budgets[0].reserved) == (21, 0)
        assert snap.concurrency == (0,)
    finally:
        await fresh.close()


async def test_a_dead_replicas_reservations_free_once_their_lease_has_ended(
    redis_url: str,
) -> None:
    """A replica that reserved and died never settles. Once the lease has ended (in real
    time: Redis expires keys by its own clock), the next usage view and the next
    reservation free what it held; the hold records must outlive the lease for that."""
    now = int(time.time() * 1000)
    dying = build_plan(team(), "u", Estimate(100, 0), now)
    plan = Plan(dying.shape, dying.tokens, dying.nanousd, 300)
    dead = RedisBackend.from_url(redis_url)
    await reserved(dead, plan, 2, now)
    await dead.close()  # it settles nothing
    await asyncio.sleep(0.6)
    fresh = RedisBackend.from_url(redis_url)
    try:
        later = int(time.time() * 1000)
        snap = await fresh.snapshot(plan, later)
        assert snap.budgets[0] is not None
        assert (snap.budgets[0].used, snap.budgets[0].reserved) == (0, 0)
        assert snap.concurrency == (0,)
        # the same through a reservation's own sweep (another pair of dead holds)
        await reserved(dead := RedisBackend.from_url(redis_url), plan, 2, later)
        await dead.close()
        await asyncio.sleep(0.6)
        latest = int(time.time() * 1000)
        hold = await fresh.try_reserve(
            Plan(plan.shape, plan.tokens, plan.nanousd, 60_000), "alive", latest
        )
        assert isinstance(hold, Hold)
        snap = await fresh.snapshot(plan, latest)
        assert snap.budgets[0] is not None
        assert (snap.budgets[0].used, snap.budgets[0].reserved) == (0, 100)
    finally:
        await fresh.close()


async def test_settles_redis_cannot_take_are_kept_owed() -> None:
    """Redis away: each settle it cannot take is kept (a late settle, delivered once it
    answers: test_limits_redis_late_settle.py), a release too (its hold must be freed)."""
    backend = unreachable()
    now = int(time.time() * 1000)
    plan = build_plan(team(), "u", Estimate(1, 0), now)
    try:
        backend.settle(Hold("a", plan, now + 1000), Actual(1, 0))
        await backend.flush()
        assert len(backend._owed) == 1
        for name in "bcd":
            backend.settle(Hold(name, plan, now + 1000), None)
        await backend.flush()
        assert len(backend._owed) == 4
        backend.settle(Hold("e", plan, 0, is_checked=False), None)  # never sent
        await backend.flush()
        assert len(backend._owed) == 4 and backend.lost_settles == 0
    finally:
        await backend.close()


async def test_a_zero_reservation_settles(redis_url: str) -> None:
    """A USD budget on an unpriced model reserves 0 nano-USD: releasing it (minus zero,
    -0 in Lua) must still be an integer Redis takes, or every settle of the team is lost."""
    now = int(time.time() * 1000)
    rules = TeamRules(
        f"settle-{uuid.uuid4().hex[:8]}",
        True,
        frozenset(),
        budgets=(Budget(BudgetPeriod.DAY, 10**9, 10.0),),
        limits=LimitsSpec(concurrency=10),
    )
    plan = build_plan(rules, "u", Estimate(100, 0), now)
    backend = RedisBackend.from_url(redis_url)
    try:
        (hold,) = await reserved(backend, plan, 1, now)
        backend.settle(hold, Actual(40, 0))
        await backend.flush()
        snap = await backend.snapshot(plan, now)
        assert backend.lost_settles == 0
        assert snap.concurrency == (0,)
        assert [(c.used, c.reserved) for c in snap.budgets if c is not None] == [(40, 0), (0, 0)]
    finally:
        await backend.close()


async def test_a_settle_rides_along_with_the_next_reserve(redis_url: str) -> None:
    """Requests one after another, no slot to free: each reserve carries the settle before
    it in the same write (one round trip for both), and the budget counts exactly."""
    backend = RedisBackend.from_url(redis_url)
    now = int(time.time() * 1000)
    plan = build_plan(team(concurrency=None), "u", Estimate(100, 0), now)
    try:
        (first,) = await reserved(backend, plan, 1, now)
        writes = recording(backend)
        backend.settle(first, Actual(40, 0))
        second = await backend.try_reserve(plan, "second", now)
        assert isinstance(second, Hold)
        settle_sha, reserve_sha = backend._settle.sha, backend._reserve.sha
        assert writes == [[settle_sha, reserve_sha]]
        backend.settle(second, Actual(2, 0))
        await backend.flush()  # nothing came along: the drainer sends it
        assert writes[1:] == [[settle_sha]]
        snap = await backend.snapshot(plan, now)
        assert snap.budgets[0] is not None
        assert (snap.budgets[0].used, snap.budgets[0].reserved) == (42, 0)
        assert backend.lost_settles == 0
    finally:
        await backend.close()


async def test_a_settle_freeing_a_last_slot_is_written_before_settle_returns(
    redis_url: str,
) -> None:
    """A team at its concurrency limit: the slot must be free before the client sees its
    answer's end (its next request may come at once, here or to another replica): the
    settle is written in the call, with the settles queued before it, and the next
    reserve goes alone, behind it."""
    backend = RedisBackend.from_url(redis_url)
    now = int(time.time() * 1000)
    plan = build_plan(team(concurrency=1), "u", Estimate(100, 0), now)
    quiet = build_plan(team(concurrency=None), "u", Estimate(100, 0), now)
    try:
        (waiting,) = await reserved(backend, quiet, 1, now)
        (first,) = await reserved(backend, plan, 1, now)
        writes = recording(backend)
        backend.settle(waiting, Actual(7, 0))  # no slot: it waits
        assert writes == []
        backend.settle(first, Actual(40, 0))  # a slot: written now, the waiting one first
        settle_sha, reserve_sha = backend._settle.sha, backend._reserve.sha
        assert writes == [[settle_sha, settle_sha]]
        assert isinstance(await backend.try_reserve(plan, "second", now), Hold)
        assert writes[1:] == [[reserve_sha]]
        await backend.flush()
        snap = await backend.snapshot(plan, now)
        assert snap.budgets[0] is not None
        assert (snap.budgets[0].used, snap.budgets[0].reserved) == (40, 100)
        assert snap.concurrency == (1,) and backend.lost_settles == 0
        used = (await backend.snapshot(quiet, now)).budgets[0]
        assert used is not None and (used.used, used.reserved) == (7, 0)
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("limit", "in_flight", "at_once"), [(8, 0, True), (9, 0, False), (9, 1, True)]
)
async def test_a_settle_is_written_at_once_only_when_few_slots_were_left(
    redis_url: str, limit: int, in_flight: int, at_once: bool
) -> None:
    """Fewer than SPARE_SLOTS_AT_ONCE slots left free once the hold took its own: written
    at once; more: it waits to ride along with the next reserve (a round trip saved)."""
    assert redis_backend.SPARE_SLOTS_AT_ONCE == 8
    backend = RedisBackend.from_url(redis_url)
    now = int(time.time() * 1000)
    plan = build_plan(team(concurrency=limit), "u", Estimate(100, 0), now)
    try:
        *others, hold = await reserved(backend, plan, in_flight + 1, now)
        assert hold.spare_slots == limit - in_flight - 1
        writes = recording(backend)
        backend.settle(hold, Actual(1, 0))
        assert writes == ([[backend._settle.sha]] if at_once else [])
        for other in others:
            backend.settle(other, Actual(1, 0))
        await backend.flush()
        assert (await backend.snapshot(plan, now)).concurrency == (0,)
    finally:
        await backend.close()


async def test_the_settle_timer_sends_only_settles_that_waited_the_delay(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests one after another, each settle carried by the next reserve: the timer
    (armed by an earlier settle) never sends a settle younger than the delay on its own,
    so at low concurrency a settle costs no round trip of its own; left alone, the last
    one is sent after the delay. (A longer delay than the gateway's, so a loaded machine's
    late wake-ups cannot age a settle past it.)"""
    delay = 0.05
    monkeypatch.setattr(redis_backend, "SETTLE_DELAY_S", delay)
    backend = RedisBackend.from_url(redis_url)
    now = int(time.time() * 1000)
    plan = build_plan(team(concurrency=None), "u", Estimate(100, 0), now)
    try:
        (hold,) = await reserved(backend, plan, 1, now)
        writes = recording(backend)
        started = time.monotonic()
        count = 0
        while time.monotonic() - started < 6 * delay:  # the timer fires ~6 times
            backend.settle(hold, Actual(1, 0))
            await asyncio.sleep(delay * 0.2)  # younger than the delay
            next_hold = await backend.try_reserve(plan, f"h{count}", now)
            assert isinstance(next_hold, Hold)
            hold, count = next_hold, count + 1
        assert all(len(w) == 2 for w in writes)  # each write: a settle and its reserve
        backend.settle(hold, Actual(1, 0))
        await asyncio.sleep(delay * 3)  # no reserve comes: the timer sends it
        assert writes[-1] == [backend._settle.sha]
        snap = await backend.snapshot(plan, now)
        assert snap.budgets[0] is not None
        assert (snap.budgets[0].used, snap.budgets[0].reserved) == (count + 1, 0)
    finally:
        await backend.close()


async def test_a_reserve_carries_only_a_few_settles(redis_url: str) -> None:
    """More settles waiting than a reserve carries (Redis runs them before it answers the
    reserve): the reserve goes alone and the drainer sends them."""
    backend = RedisBackend.from_url(redis_url)
    now = int(time.time() * 1000)
    plan = build_plan(team(concurrency=None), "u", Estimate(100, 0), now)
    try:
        holds = await reserved(backend, plan, RIDE_ALONG_MAX + 1, now)
        writes = recording(backend)
        for hold in holds:
            backend.settle(hold, Actual(1, 0))
        assert isinstance(await backend.try_reserve(plan, "alone", now), Hold)
        await backend.flush()
        assert [len(w) for w in writes] == [1, RIDE_ALONG_MAX + 1]
        snap = await backend.snapshot(plan, now)
        assert snap.budgets[0] is not None
        assert (snap.budgets[0].used, snap.budgets[0].reserved) == (RIDE_ALONG_MAX + 1, 100)
    finally:
        await backend.close()


async def test_settles_riding_with_a_reserve_redis_cannot_take_are_kept_owed() -> None:
    """Redis gone: the reserve fails as a backend error (the policy's on_backend_error
    decides), and the settles that rode along are kept owed, not dropped."""
    backend = unreachable()
    now = int(time.time() * 1000)
    plan = build_plan(team(), "u", Estimate(1, 0), now)
    try:
        backend.settle(Hold("a", plan, now + 1000), Actual(1, 0))
        with pytest.raises(BackendUnavailable):
            await backend.try_reserve(plan, "b", now)
        # Kept: owed, or still queued when the reserve failed to connect before taking it.
        assert len(backend._queue) + len(backend._owed) == 1
        await backend.flush()  # still away: still owed
        assert len(backend._owed) == 1 and backend.lost_settles == 0
    finally:
        await backend.close()
