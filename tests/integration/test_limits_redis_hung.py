"""A hung Redis (stopped, not dead): the reserves the gateway gave up on still run once
it wakes, and must hold nothing; a late reply is never taken for a newer command's."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeout

from gateway.limits.backend import BackendUnavailable, Hold
from gateway.limits.errors import LIMITS_RETRY_AFTER_S, LimitsUnavailable
from gateway.limits.plan import Actual, Estimate, Plan, build_plan
from gateway.limits.redis_backend import REDIS_TIMEOUT_S, RedisBackend
from gateway.limits.redis_calls import abandoned_reserve, charge_command, team_prefix
from gateway.limits.redis_scripts import CHARGE, RESERVE
from gateway.limits.resp import NotSent, RespConnection
from gateway.limits.service import Limits
from gateway.policy.compiled import Budget, BudgetPeriod, TeamRules
from gateway.policy.schema import BackendErrorMode, LimitsSpec
from tests.support.gateway import running_gateway
from tests.support.redis_server import start_redis
from tests.support.upstream import MockUpstream

needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server"
)
# A Redis of this module's own, to stop with SIGSTOP: never the shared one.
OWN_PORTS = range(18600, 18700)


def _own_port() -> int:
    ports = list(OWN_PORTS)
    random.shuffle(ports)
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {OWN_PORTS}")


@contextlib.contextmanager
def own_redis(folder: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis of our own (its URL and process), woken and stopped at the end."""
    port = _own_port()
    server = start_redis(port, folder)
    try:
        yield f"redis://127.0.0.1:{port}", server
    finally:
        server.send_signal(signal.SIGCONT)
        server.terminate()
        server.wait(10)


@contextlib.contextmanager
def hung(server: subprocess.Popen[bytes]) -> Iterator[None]:
    """Redis stopped (its sockets still accept and buffer), then woken."""
    server.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.send_signal(signal.SIGCONT)


def _team(concurrency: int | None = 50) -> TeamRules:
    return TeamRules(
        f"hung-{uuid.uuid4().hex[:8]}",
        True,
        frozenset(),
        budgets=(Budget(BudgetPeriod.DAY, 10_000, None),),
        limits=LimitsSpec(concurrency=concurrency),
    )


async def _no_spend(team: str, subject: str | None, start_ms: int, end_ms: int) -> tuple[int, int]:
    return 0, 0


async def _reserved_and_in_flight(backend: RedisBackend, plan: Plan) -> tuple[int, int, int]:
    snap = await backend.snapshot(plan, int(time.time() * 1000))
    counter = snap.budgets[0]
    assert counter is not None
    return counter.used, counter.reserved, snap.concurrency[0]


async def _hold_records(url: str, plan: Plan) -> dict[bytes, bytes]:
    client = aioredis.Redis.from_url(url)
    try:
        records: dict[bytes, bytes] = await client.hgetall(team_prefix(plan.team) + "holds")
        return records
    finally:
        await client.aclose()


async def _ran_late(url: str) -> None:
    """Redis woke: give it a moment to run what waited in its sockets."""
    client = aioredis.Redis.from_url(url)
    try:
        await client.ping()
        await asyncio.sleep(0.2)
    finally:
        await client.aclose()


@pytest.fixture
async def limits_on_own_redis(
    tmp_path: Path,
) -> AsyncIterator[tuple[Limits, str, subprocess.Popen[bytes]]]:
    with own_redis(str(tmp_path)) as (url, server):
        limits = Limits(RedisBackend.from_url(url), _no_spend)
        try:
            yield limits, url, server
        finally:
            await limits.close()


@needs_redis_server
async def test_reserves_given_up_on_in_a_hung_redis_hold_nothing_once_it_wakes(
    limits_on_own_redis,
) -> None:
    """The probe: open mode, Redis stopped, three requests served unchecked (each after
    the timeout), Redis woken: their reserves run late, yet the usage view says nothing
    is reserved or in flight, and only what they used is charged."""
    limits, url, server = limits_on_own_redis
    backend = limits.backend
    assert isinstance(backend, RedisBackend)
    now = int(time.time() * 1000)
    plan = build_plan(_team(), "u", Estimate(109, 0), now)
    first = await limits.reserve(plan, BackendErrorMode.CLOSED)  # rebuilt, in step
    limits.settle(first, Actual(10, 0))
    await backend.flush()

    with hung(server):
        for _ in range(3):
            started = time.monotonic()
            hold = await limits.reserve(plan, BackendErrorMode.OPEN)
            assert not hold.is_checked
            assert time.monotonic() - started < REDIS_TIMEOUT_S * 3
            limits.settle(hold, Actual(20, 0))
    await _ran_late(url)

    assert await _reserved_and_in_flight(backend, plan) == (10 + 3 * 20, 0, 0)
    assert all(record == b"" for record in (await _hold_records(url, plan)).values())
    hold = await limits.reserve(plan, BackendErrorMode.CLOSED)
    assert hold.is_checked
    assert await _reserved_and_in_flight(backend, plan) == (70, 109, 1)
    assert backend.lost_charges == 0


@needs_redis_server
async def test_a_reserve_refused_with_503_in_a_hung_redis_holds_nothing_once_it_wakes(
    limits_on_own_redis,
) -> None:
    """Closed mode: the requests got 503 limits_unavailable; their late reserves hold
    nothing from the next reserve (or usage view) on."""
    limits, url, server = limits_on_own_redis
    backend = limits.backend
    assert isinstance(backend, RedisBackend)
    plan = build_plan(_team(concurrency=2), "u", Estimate(109, 0), int(time.time() * 1000))
    limits.settle(await limits.reserve(plan, BackendErrorMode.CLOSED), Actual(1, 0))
    await backend.flush()

    with hung(server):
        for _ in range(2):
            with pytest.raises(LimitsUnavailable):
                await limits.reserve(plan, BackendErrorMode.CLOSED)
    await _ran_late(url)

    # Two late holds would fill the concurrency limit of 2: these fit.
    holds = [await limits.reserve(plan, BackendErrorMode.CLOSED) for _ in range(2)]
    assert all(h.is_checked for h in holds)
    assert await _reserved_and_in_flight(backend, plan) == (1, 2 * 109, 2)


async def test_a_reserve_that_runs_after_it_was_given_up_on_reserves_nothing(
    redis_url: str,
) -> None:
    """The two orders a hung Redis may run them in, on the scripts themselves: the give-up
    first leaves a mark that refuses the late reserve; the reserve first is freed by it.
    The give-up sent again (its reply lost) changes nothing; the mark goes at lease end."""
    client = aioredis.Redis.from_url(redis_url)
    backend = RedisBackend.from_url(redis_url)
    now = int(time.time() * 1000)
    plan = build_plan(_team(), "u", Estimate(109, 0), now)
    p = team_prefix(plan.team)
    lease_end = now + plan.lease_ms
    try:
        await backend.seed(plan.team, ((plan.budgets[0], 0),))
        charge_sha = await client.script_load(CHARGE)
        assert await client.script_load(RESERVE) == backend._reserve.sha

        give_up = abandoned_reserve("late", plan, now + 500, lease_end)
        assert give_up is not None
        for _ in range(2):  # sent twice: its first reply lost
            await client.execute_command(*charge_command(charge_sha, give_up))
        with pytest.raises(BackendUnavailable):
            await backend.try_reserve(plan, "late", now)  # the late reserve: refused
        assert await _reserved_and_in_flight(backend, plan) == (0, 0, 0)
        assert await client.hget(p + "holds", "late") == b""

        first = await backend.try_reserve(plan, "early", now)  # runs before its give-up
        assert isinstance(first, Hold)
        assert await _reserved_and_in_flight(backend, plan) == (0, 109, 1)
        early = abandoned_reserve("early", plan, now + 500, lease_end)
        assert early is not None
        for _ in range(2):
            await client.execute_command(*charge_command(charge_sha, early))
        assert await _reserved_and_in_flight(backend, plan) == (0, 0, 0)
        assert await client.hget(p + "holds", "early") == b""  # a mark, sent again: harmless

        # The mark lives to the lease end (the gateway's clock), then a sweep takes it.
        ttl = await client.pttl(p + "holds")
        assert ttl >= plan.lease_ms - 1_000
        await backend.snapshot(plan, lease_end)
        assert await client.hexists(p + "holds", "late") == 0
    finally:
        await backend.close()
        await client.aclose()


@needs_redis_server
async def test_a_late_reply_is_never_taken_for_a_newer_commands(tmp_path) -> None:
    """Both clients (the fast connection and redis-py): a command that timed out in a hung
    Redis fails; once Redis wakes, the next command gets its own reply, not the late one."""
    with own_redis(str(tmp_path)) as (url, server):
        fast = RespConnection.from_url(url, timeout_s=REDIS_TIMEOUT_S)
        assert fast is not None
        client = aioredis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S)
        try:
            assert await fast.call(("ECHO", "warm")) == b"warm"
            assert await client.echo("warm") == b"warm"
            with hung(server):
                with pytest.raises(TimeoutError):
                    await fast.call_many([("ECHO", "late-1"), ("ECHO", "late-2")])
                with pytest.raises(RedisTimeout):
                    await client.echo("late")
            await _ran_late(url)
            assert await fast.call_many([("ECHO", "new-1"), ("ECHO", "new-2")]) == [
                b"new-1",
                b"new-2",
            ]
            assert await client.echo("new") == b"new"
        finally:
            await fast.close()
            await client.aclose()


async def test_a_command_that_could_not_connect_says_it_was_never_sent() -> None:
    """Nothing listens: NotSent (no reserve of it can run late, nothing to give up)."""
    fast = RespConnection("127.0.0.1", _own_port(), timeout_s=REDIS_TIMEOUT_S)
    with pytest.raises(NotSent):
        await fast.call(("PING",))


@needs_redis_server
async def test_a_503_for_a_limits_store_that_is_down_says_when_to_retry(tmp_path, http) -> None:  # type: ignore[no-untyped-def]
    """Closed mode, Redis stopped: 503 limits_unavailable with `retry-after: 1` (README's
    failure table), so the SDKs wait a moment and retry."""
    with own_redis(str(tmp_path)) as (url, server):
        async with MockUpstream("up") as up:
            bundle = (
                f'providers: {{up: {{type: openai-compatible, api_base: "{up.base_url}"}}}}\n'
                "models: {chat: {deployments: [{provider: up, model: m}]}}\n"
                'teams: {lim: {models: ["chat"], budgets: [{period: day, tokens: 100000}]}}\n'
            )
            async with running_gateway(tmp_path, bundle, redis_url=url) as gw:
                server.terminate()
                server.wait(10)
                headers = {"authorization": f"Bearer {await gw.token('lim')}"}
                body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
                async with http.post(
                    f"{gw.base_url}/chat/completions", json=body, headers=headers
                ) as response:
                    assert response.status == 503
                    assert response.headers["retry-after"] == str(LIMITS_RETRY_AFTER_S)
                    assert (await response.json())["error"]["code"] == "limits_unavailable"
