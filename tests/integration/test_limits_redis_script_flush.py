"""Redis forgets its scripts (SCRIPT FLUSH; a restart that kept its keys): a settle must
still land before the reserve sent after it. A client that sends one request at a time
with `concurrency: 1` is never refused "in flight" because its last request's settle,
refused for the script and sent again, reached Redis after its next reserve. A
redis-server of the tests' own: the flushes would disturb the shared one's users."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
import redis.asyncio as aioredis

from gateway.limits import redis_backend, resp
from gateway.limits.backend import Hold
from gateway.limits.plan import Actual, Estimate, Plan, build_plan
from gateway.limits.redis_backend import SCRIPTS, RedisBackend
from gateway.policy.compiled import Budget, BudgetPeriod, TeamRules
from gateway.policy.schema import LimitsSpec
from tests.support.gateway import running_gateway
from tests.support.redis_server import free_port, start_redis
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

POLICY = """\
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat: {{deployments: [{{provider: up, model: gpt-4o-mini}}]}}
teams:
  {team}:
    models: ["*"]
    budgets: [{{period: day, tokens: 1000000000}}]
    limits: {{concurrency: 1}}
"""


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """The URL of a redis-server started for this test alone (stopped after it)."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
async def admin(own_redis: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the test's own, to flush the scripts with."""
    client = aioredis.Redis.from_url(own_redis)
    yield client
    await client.aclose()


def on_the_wire(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Each write the fast connection makes: its commands (an EVALSHA as its sha)."""
    writes: list[list[str]] = []
    write = resp._Link._write

    def record(link: resp._Link, data: bytes, entries: Iterable[resp.Waiting]) -> None:
        commands, pos = [], 0
        while pos < len(data):
            parts, pos = resp.parse(data, pos)
            commands.append("LOAD" if parts[0] == b"SCRIPT" else parts[1].decode())
        writes.append(commands)
        write(link, data, entries)

    monkeypatch.setattr(resp._Link, "_write", record)
    return writes


def _plan(concurrency: int | None = 1) -> Plan:
    """A plan with a day budget and (unless None) a concurrency slot: a settle that
    frees a slot is written at once, one without waits to ride along with a reserve."""
    rules = TeamRules(
        f"flush-{uuid.uuid4().hex[:8]}",
        True,
        frozenset(),
        budgets=(Budget(BudgetPeriod.DAY, 10**9, None),),
        limits=LimitsSpec(concurrency=concurrency),
    )
    return build_plan(rules, "u", Estimate(100, 0), int(time.time() * 1000))


async def _reserve(backend: RedisBackend, plan: Plan, hold_id: str) -> Hold:
    hold = await backend.try_reserve(plan, hold_id, int(time.time() * 1000))
    assert isinstance(hold, Hold), hold
    return hold


@pytest.mark.parametrize("concurrency", [None, 1], ids=["carried", "written at once"])
async def test_a_settle_after_a_flush_lands_before_the_next_reserve(
    own_redis: str, admin: aioredis.Redis, monkeypatch: pytest.MonkeyPatch, concurrency: int | None
) -> None:
    """Scripts flushed before A's reserve: A's settle lands before B's reserve and B holds
    the slot, whether the settle is carried by B's reserve (no slot in the plan: it waits
    for one) or written at once (it frees a slot). Before, A's reserve loaded RESERVE again
    and nothing else: A's settle met NOSCRIPT while B's reserve, behind it in the same
    write, ran (refused)."""
    monkeypatch.setattr(redis_backend, "SETTLE_DELAY_S", 5.0)  # a settle waits for B
    backend = RedisBackend.from_url(own_redis)
    plan = _plan(concurrency=concurrency)
    try:
        await backend.seed(plan.team, tuple((c, 0) for c in plan.budgets))
        await admin.script_flush()
        a = await _reserve(backend, plan, "a")
        backend.settle(a, Actual(5, 0))
        await _reserve(backend, plan, "b")
        await backend.flush()
        snap = await backend.snapshot(plan, int(time.time() * 1000))
        assert snap.concurrency == (() if concurrency is None else (1,))
        assert snap.budgets[0] is not None
        assert (snap.budgets[0].used, snap.budgets[0].reserved) == (5, 100)
        assert backend.lost_settles == 0
    finally:
        await backend.close()


async def test_a_settle_refused_for_the_script_is_sent_again_before_a_reserve_sent_after_it(
    own_redis: str, admin: aioredis.Redis
) -> None:
    """Scripts flushed after A's reserve: A's settle goes out alone (the drainer), B's
    reserve right behind it on the connection; both meet NOSCRIPT; A's settle is sent
    again first and B holds the slot, every time."""
    backend = RedisBackend.from_url(own_redis)
    plan = _plan()
    try:
        await backend.seed(plan.team, tuple((c, 0) for c in plan.budgets))
        previous = await _reserve(backend, plan, "first")
        for i in range(20):
            await admin.script_flush()
            # Both written in one turn of the loop, the settle first, before any reply.
            _, hold = await asyncio.gather(
                backend._settle_now(previous, Actual(1, 0)),
                backend.try_reserve(plan, f"next-{i}", int(time.time() * 1000)),
            )
            assert isinstance(hold, Hold), (i, hold)
            previous = hold
        assert backend.lost_settles == 0
    finally:
        await backend.close()


async def test_settles_and_their_reserve_refused_for_the_script_go_again_in_their_order(
    own_redis: str, admin: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scripts flushed while settles waited: the reserve carrying them and the settles are
    refused with NOSCRIPT (none of them ran); they go again at once, in their order, behind
    every script loaded again: all land, none counted lost."""
    monkeypatch.setattr(redis_backend, "SETTLE_DELAY_S", 5.0)  # the settles wait for it
    backend = RedisBackend.from_url(own_redis)
    plan = _plan(concurrency=None)  # no slot to free: the settle waits for the reserve
    try:
        await backend.seed(plan.team, tuple((c, 0) for c in plan.budgets))
        a = await _reserve(backend, plan, "a")
        backend.settle(a, Actual(5, 0))
        await admin.script_flush()
        writes = on_the_wire(monkeypatch)
        await _reserve(backend, plan, "b")
        settle, reserve = backend._settle.sha, backend._reserve.sha
        assert writes[0] == [settle, reserve]
        assert writes[1] == ["LOAD"] * len(SCRIPTS) + [settle, reserve]
        await backend.flush()
        snap = await backend.snapshot(plan, int(time.time() * 1000))
        assert snap.budgets[0] is not None
        assert (snap.budgets[0].used, snap.budgets[0].reserved) == (5, 100)
        assert backend.lost_settles == 0
    finally:
        await backend.close()


async def test_a_script_flushed_twice_in_a_row_is_loaded_again_each_time(
    own_redis: str, admin: aioredis.Redis
) -> None:
    """Each of the backend's scripts called after two flushes (the seed, the sweep of the
    usage view, a reserve, a settle, an owed charge): each lands."""
    backend = RedisBackend.from_url(own_redis)
    plan = _plan()
    try:
        for _ in range(2):
            await admin.script_flush()
        await backend.seed(plan.team, tuple((c, 0) for c in plan.budgets))
        await admin.script_flush()
        a = await _reserve(backend, plan, "a")
        await admin.script_flush()
        await backend._settle_now(a, Actual(3, 0))
        await admin.script_flush()
        backend.settle(Hold("unchecked", plan, 0, is_checked=False), Actual(4, 0))
        await admin.script_flush()
        snap = await backend.snapshot(plan, int(time.time() * 1000))  # charges, then sweeps
        assert snap.budgets[0] is not None
        assert (snap.budgets[0].used, snap.budgets[0].reserved) == (7, 0)
        assert backend.lost_settles == 0 and backend.lost_charges == 0
    finally:
        await backend.close()


async def test_one_request_at_a_time_is_never_refused_whenever_the_scripts_are_flushed(
    tmp_path: Path, own_redis: str, admin: aioredis.Redis
) -> None:
    """A team with `concurrency: 1`, one request after another, the scripts flushed
    between them at different points (just after an answer, a moment later, twice in a
    row): none is refused."""
    team = f"flush-{uuid.uuid4().hex[:8]}"
    async with MockUpstream("up") as up:
        policy = POLICY.format(base=up.base_url, team=team)
        async with running_gateway(tmp_path, policy, redis_url=own_redis) as gw:
            token = await gw.token(team)
            body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
            statuses = []
            async with httpx.AsyncClient(base_url=gw.origin) as client:

                async def ask() -> None:
                    response = await client.post(
                        "/v1/chat/completions",
                        json=body,
                        headers={"authorization": f"Bearer {token}"},
                    )
                    statuses.append((response.status_code, response.text[:200]))

                await ask()
                for _ in range(6):
                    await admin.script_flush()  # just after an answer (its settle queued)
                    await ask()
                    await ask()
                    await asyncio.sleep(0.05)  # the last settle landed: flushed before a reserve
                    await admin.script_flush()
                    await ask()
                    await ask()
                    await admin.script_flush()
                    await admin.script_flush()
                    await ask()
    refused = [s for s in statuses if s[0] != 200]
    assert not refused, refused


async def test_without_the_fast_connection_a_flush_is_survived_through_redis_py(
    own_redis: str, admin: aioredis.Redis
) -> None:
    """No fast connection (a URL resp.py cannot serve): after each flush the scripts are
    loaded again through redis-py and every call lands."""
    backend = RedisBackend(aioredis.Redis.from_url(own_redis))
    plan = _plan()
    try:
        await admin.script_flush()
        await backend.seed(plan.team, tuple((c, 0) for c in plan.budgets))
        previous = await _reserve(backend, plan, "first")
        for i in range(3):
            await admin.script_flush()
            await backend._settle_now(previous, Actual(1, 0))
            await admin.script_flush()
            previous = await _reserve(backend, plan, f"next-{i}")
        assert backend.lost_settles == 0
    finally:
        await backend.close()
