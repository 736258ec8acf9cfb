"""The Redis backend: the same decisions as the in-process one, keys in one slot with
TTLs, counters rebuilt from the ledger, closed/open with Redis really stopped."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from dataclasses import replace

import openai
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from gateway.limits.backend import Hold, NeedsSeed
from gateway.limits.errors import LimitsUnavailable
from gateway.limits.memory import MemoryBackend
from gateway.limits.plan import Actual, Estimate, build_plan
from gateway.limits.rebuild import ledger_reader
from gateway.limits.redis_backend import RedisBackend, team_prefix
from gateway.limits.service import Limits
from gateway.policy.compiled import Budget, BudgetPeriod, TeamRules
from gateway.policy.schema import (
    MAX_RATE_PER_MINUTE,
    BackendErrorMode,
    LimitsSpec,
    PerUserSpec,
)
from gateway.usage.ledger_table import usage_ledger
from tests.support.gateway import running_gateway
from tests.support.redis_server import free_port, start_redis
from tests.support.upstream import MockUpstream


def rules(name: str) -> TeamRules:
    return TeamRules(
        name,
        True,
        frozenset(),
        budgets=(Budget(BudgetPeriod.DAY, 300, None), Budget(BudgetPeriod.MONTH, None, 0.000002)),
        limits=LimitsSpec(rpm=5, tpm=200, concurrency=3),
        per_user=PerUserSpec(rpm=2, tokens_per_day=150, concurrency=2),
    )


def kind(found: object) -> tuple[object, ...]:
    """A decision's observable shape, for comparing the two backends."""
    if isinstance(found, Hold):
        return ("hold", found.requests, found.tokens)
    if isinstance(found, NeedsSeed):
        return ("seed", tuple(c.key for c in found.checks))
    fields = [type(found).__name__]
    for name in ("verdict", "counter", "retry_after_ms", "remaining", "reset_ms", "in_flight"):
        if hasattr(found, name):
            fields.append(getattr(found, name))
    return tuple(fields)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(1, 60), st.sampled_from(["u1", "u:2 x"])),
        st.tuples(st.just("settle"), st.integers(0, 150), st.booleans()),
        st.tuples(st.just("wait"), st.integers(1, 90_000), st.none()),
        st.tuples(st.just("limits"), st.integers(1, 8), st.integers(20, 400)),  # rpm, tpm edited
        # the budgets' period or the timezone edited: new counters, holds in flight adopted
        st.tuples(st.just("period"), st.sampled_from(list(BudgetPeriod)), st.none()),
        st.tuples(st.just("timezone"), st.sampled_from(["UTC", "Europe/Berlin"]), st.none()),
    ),
    max_size=40,
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops)
def test_redis_decides_exactly_as_the_in_process_backend(redis_url: str, ops: list[tuple]) -> None:  # type: ignore[type-arg]
    """Any interleaving of reserves, settles (over or under the estimate), time, edits of
    rpm and tpm, and of the budgets' period or the timezone (new counters, which adopt
    the holds in flight): the Lua scripts and the pure cores give the same answer at
    every step."""

    async def main() -> None:
        team = rules(f"parity-{uuid.uuid4().hex[:8]}")
        memory, remote = MemoryBackend(), RedisBackend.from_url(redis_url)
        # Real time: budget keys expire at their period's end (plus a day) in Redis's clock.
        now, holds, n, zone = int(time.time() * 1000), [], 0, "UTC"
        try:
            for op, a, b in ops:
                if op == "reserve":
                    n += 1
                    plan = build_plan(
                        team, b, Estimate(a, a * 10), now, timezone=zone, deadline_s=10
                    )
                    local = memory.reserve_now(plan, str(n), now)
                    there = await remote.try_reserve(plan, str(n), now)
                    assert kind(local) == kind(there)
                    if isinstance(local, NeedsSeed):
                        seeds = tuple((c, 7) for c in local.checks)
                        await memory.seed(team.name, seeds)
                        await remote.seed(team.name, seeds)
                        local = memory.reserve_now(plan, str(n), now)
                        there = await remote.try_reserve(plan, str(n), now)
                    # the same hold (lease, x-ratelimit views) or the same refusal (check,
                    # counter, wait, and the rate keys' views its 429 shows)
                    assert local == there
                    if isinstance(local, Hold):
                        holds.append(local)
                elif op == "settle" and holds:
                    hold = holds.pop(0)
                    actual = Actual(a, a * 10) if b else None
                    memory.settle(hold, actual)
                    await remote._settle_now(hold, actual)
                elif op == "wait":
                    now += a
                elif op == "limits":  # the same keys, read under the new limits
                    team = replace(team, limits=LimitsSpec(rpm=a, tpm=b, concurrency=3))
                elif op == "period":
                    budgets = tuple(replace(budget, period=a) for budget in team.budgets)
                    team = replace(team, budgets=budgets)
                elif op == "timezone":
                    zone = a
                probe = build_plan(team, "u1", Estimate(0, 0), now, timezone=zone)
                assert await memory.snapshot(probe, now) == await remote.snapshot(probe, now)
        finally:
            await remote.close()

    asyncio.run(main())


async def test_at_the_largest_rates_a_policy_accepts_redis_counts_to_the_unit(
    redis_url: str,
) -> None:
    """Lua counts in doubles: at the schema's largest rpm and tpm (policy/schema.py), with
    budgets and concurrency as large as a policy can write them, every decision, view
    and counter equals the in-process one (a rate near 2^63 once came back from Redis
    as a negative x-ratelimit-remaining)."""
    team = TeamRules(
        f"largest-{uuid.uuid4().hex[:8]}",
        True,
        frozenset(),
        budgets=(
            Budget(BudgetPeriod.DAY, None, 1e300),
            Budget(BudgetPeriod.MONTH, 2**63 - 1, None),
        ),
        limits=LimitsSpec(rpm=MAX_RATE_PER_MINUTE, tpm=MAX_RATE_PER_MINUTE, concurrency=2**63 - 1),
        per_user=PerUserSpec(tokens_per_day=2**63 - 1),
    )
    memory, remote = MemoryBackend(), RedisBackend.from_url(redis_url)
    seeded = 10**15
    try:
        now = int(time.time() * 1000)
        for backend in (memory, remote):
            plan = build_plan(team, "u", Estimate(1_048_576, 10**12 + 7), now)
            await backend.seed(team.name, tuple((c, seeded) for c in plan.budgets))
        for i in range(3):  # a few ms apart: the buckets drain between requests
            at = now + 7 * i
            plan = build_plan(team, "u", Estimate(1_048_576, 10**12 + 7), at)
            local = memory.reserve_now(plan, f"h{i}", at)
            there = await remote.try_reserve(plan, f"h{i}", at)
            assert isinstance(local, Hold) and local == there
            assert there.tokens is not None and there.tokens.remaining > 0
            memory.settle(local, Actual(1_048_569, 10**12 - 3))
            await remote._settle_now(there, Actual(1_048_569, 10**12 - 3))
        snapshot = await remote.snapshot(plan, now + 20)
        assert snapshot == await memory.snapshot(plan, now + 20)
        assert [c.used for c in snapshot.budgets] == [
            seeded + 3 * (10**12 - 3),
            seeded + 3 * 1_048_569,
            seeded + 3 * 1_048_569,
        ]
    finally:
        await remote.close()


async def test_a_teams_keys_share_one_slot_and_all_expire(redis_url: str) -> None:
    team = rules(f"slot-{uuid.uuid4().hex[:8]}")
    backend = RedisBackend.from_url(redis_url)
    client = aioredis.Redis.from_url(redis_url)
    try:
        now = int(time.time() * 1000)
        plan = build_plan(team, "alice@example.com", Estimate(10, 10), now)
        assert isinstance(await backend.try_reserve(plan, "h1", now), NeedsSeed)
        await backend.seed(team.name, tuple((c, 0) for c in plan.budgets))
        hold = await backend.try_reserve(plan, "h1", now)
        assert isinstance(hold, Hold)
        keys = [k async for k in client.scan_iter(match=team_prefix(team.name) + "*")]
        checks = len(plan.budgets) + len(plan.rates) + len(plan.concurrency)
        assert len(keys) == 2 + checks + 1  # holds, exp, the checks, the seed marker
        assert len({key_slot(k) for k in keys}) == 1
        assert all([await client.pttl(k) > 0 for k in keys])
        backend.settle(hold, Actual(5, 5))
    finally:
        await backend.close()
        await client.aclose()


async def test_counters_lost_from_redis_are_rebuilt_from_the_ledger(redis_url: str, engine) -> None:
    """Ledger rows of this day and month count; yesterday's and other teams' do not."""
    name = f"rebuild-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    team = TeamRules(name, True, frozenset(), budgets=(Budget(BudgetPeriod.DAY, 1000, None),))
    plan = build_plan(team, "u", Estimate(100, 0), now)
    start = plan.budgets[0].starts_ms
    rows = [(name, start, 300), (name, now, 200), (name, start - 1, 5000), ("other", now, 5000)]
    async with engine.begin() as conn:
        await conn.execute(
            usage_ledger.insert(),
            [_row(i, t, at, tokens) for i, (t, at, tokens) in enumerate(rows)],
        )
    limits = Limits(RedisBackend.from_url(redis_url), ledger_reader(engine), clock=lambda: now)
    try:
        hold = await limits.reserve(plan, BackendErrorMode.CLOSED)
        snap = await limits.snapshot(plan)
        assert snap.budgets[0] is not None
        assert (snap.budgets[0].used, snap.budgets[0].reserved) == (500, 100)
        limits.settle(hold, Actual(80, 0))
    finally:
        await limits.close()


async def test_cache_hits_on_the_ledger_spent_no_budget(engine) -> None:
    """A hit's row holds the tokens it saved; the rebuild counts what was spent only."""
    name = f"hits-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    rows = [_row(0, name, now, 300), _row(1, name, now, 700, cache="hit")]
    rows.append(_row(2, name, now, 50, cache="miss"))
    async with engine.begin() as conn:
        await conn.execute(usage_ledger.insert(), rows)
    tokens, _ = await ledger_reader(engine)(name, None, now - 1000, now + 1000)
    assert tokens == 350


def _row(i: int, team: str, at_ms: int, tokens: int, cache: str | None = None) -> dict[str, object]:
    return {
        "cache": cache,
        "id": f"{team}-{i}-{uuid.uuid4().hex}",
        "request_id": "r",
        "at_ms": at_ms,
        "endpoint": "chat",
        "team": team,
        "subject": "u",
        "stream": False,
        "status": 200,
        "outcome": "ok",
        "input_tokens": tokens // 2,
        "output_tokens": tokens - tokens // 2,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "tokens_estimated": False,
        "cost_nanousd": 0,
        "price_source": "unknown",
        "price_input": 0,
        "price_output": 0,
        "price_cached_input": 0,
        "price_cache_write": 0,
        "price_reasoning": 0,
        "attempts": 1,
        "latency_ms": 1,
    }


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_redis_stopped_closed_refuses_open_serves_and_counts(tmp_path, engine) -> None:
    """Redis really stopped: closed → 503 limits_unavailable; open → served and counted;
    Redis back → reservations work again."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    backend = RedisBackend.from_url(f"redis://127.0.0.1:{port}")
    limits = Limits(backend, ledger_reader(engine))
    team = TeamRules("stop", True, frozenset(), limits=LimitsSpec(rpm=100))
    plan = build_plan(team, "u", Estimate(1, 0), int(time.time() * 1000))
    try:
        assert (await limits.reserve(plan, BackendErrorMode.CLOSED)).is_checked
        assert await backend.health() == "ok"
        server.terminate()
        server.wait(10)
        with pytest.raises(LimitsUnavailable) as refused:
            await limits.reserve(plan, BackendErrorMode.CLOSED)
        assert refused.value.status == 503 and refused.value.code == "limits_unavailable"
        assert "limits store is unreachable" in str(refused.value)
        hold = await limits.reserve(plan, BackendErrorMode.OPEN)
        assert not hold.is_checked and limits.unchecked == 1
        limits.settle(hold, Actual(1, 0))  # nothing to settle, no error
        assert (await backend.health()).startswith("error: Redis unreachable")
        server = start_redis(port, str(tmp_path))
        assert (await limits.reserve(plan, BackendErrorMode.CLOSED)).is_checked
    finally:
        await limits.close()
        if server.poll() is None:
            server.terminate()
            server.wait(10)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_readyz_reports_an_unreachable_redis(tmp_path, http) -> None:
    port = free_port()
    server = start_redis(port, str(tmp_path))
    try:
        async with running_gateway(
            tmp_path, "teams: {}\n", redis_url=f"redis://127.0.0.1:{port}"
        ) as gw:
            async with http.get(gw.origin + "/readyz") as response:
                assert response.status == 200
                assert (await response.json())["checks"]["redis"] == "ok"
            server.terminate()
            server.wait(10)
            async with http.get(gw.origin + "/readyz") as response:
                assert response.status == 503
                assert (await response.json())["checks"]["redis"].startswith("error: Redis")
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(10)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_readyz_stays_ready_without_redis_when_the_policy_serves_unchecked(
    tmp_path, http
) -> None:
    """`on_backend_error: open`: Redis stopped, /readyz still 200 (every replica shares that
    Redis: 503 would take them all out of the load balancer, and open would serve no one),
    its redis check naming the error and that requests are served unchecked."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    try:
        async with running_gateway(
            tmp_path,
            "limits: {on_backend_error: open}\nteams: {}\n",
            redis_url=f"redis://127.0.0.1:{port}",
        ) as gw:
            server.terminate()
            server.wait(10)
            async with http.get(gw.origin + "/readyz") as response:
                body = await response.json()
                assert (response.status, body["status"]) == (200, "ready"), body
                redis_check = body["checks"]["redis"]
                assert redis_check.startswith("error: Redis unreachable"), redis_check
                assert redis_check.endswith("(on_backend_error open: serving unchecked)")
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(10)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_early_refusals_read_the_rate_keys_from_redis_and_go_without_them_when_down(
    tmp_path,
) -> None:
    """A 400 before the limits stage: its x-ratelimit-* headers read from Redis, taking
    nothing; with Redis stopped the 400 is still a 400, without them."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    try:
        async with MockUpstream("up") as up:
            bundle = (
                f'providers: {{up: {{type: openai-compatible, api_base: "{up.base_url}"}}}}\n'
                "models: {chat: {deployments: [{provider: up, model: m}]}}\n"
                'teams: {lim: {models: ["chat"], limits: {rpm: 9, tpm: 100000}}}\n'
            )
            async with running_gateway(
                tmp_path, bundle, redis_url=f"redis://127.0.0.1:{port}"
            ) as gw:
                client = await gw.openai("lim")
                hi = [{"role": "user", "content": "hi"}]
                await client.chat.completions.create(model="chat", messages=hi, max_tokens=5)
                with pytest.raises(openai.BadRequestError) as refused:
                    await client.chat.completions.create(model="chat", messages=hi, max_tokens=-1)
                headers = refused.value.response.headers
                assert headers["x-ratelimit-limit-requests"] == "9"
                assert headers["x-ratelimit-remaining-requests"] == "8"  # the first one's take
                assert headers["x-ratelimit-limit-tokens"] == "100000"
                server.terminate()
                server.wait(10)
                with pytest.raises(openai.BadRequestError) as down:
                    await client.chat.completions.create(model="chat", messages=hi, max_tokens=-1)
                assert down.value.status_code == 400
                assert "x-ratelimit-limit-requests" not in down.value.response.headers
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(10)
