"""What requests served unchecked (Redis unreachable, `on_backend_error: open`) spent
reaches their budget counters once Redis answers again, exactly once: on a Redis that
came back with its keys (really stopped, saved, restarted), before the next reserve is
checked; never on a counter rebuilt from the ledger since (its sum holds those rows)."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import time
import uuid

import pytest
import redis
import redis.asyncio as aioredis

from gateway.limits.backend import BackendUnavailable, Hold
from gateway.limits.errors import BudgetExhausted
from gateway.limits.plan import Actual, Estimate, Plan, build_plan
from gateway.limits.rebuild import ledger_reader
from gateway.limits.redis_backend import OWED_RETRY_S, OWED_RIDE_ALONG, RedisBackend
from gateway.limits.redis_calls import charge_command, owed_charge, team_prefix
from gateway.limits.redis_scripts import CHARGE
from gateway.limits.service import Limits
from gateway.policy.compiled import Budget, BudgetPeriod, PerUserSpec, TeamRules
from gateway.policy.schema import BackendErrorMode
from gateway.usage.ledger_table import usage_ledger
from tests.integration.test_limits_redis import _row
from tests.integration.test_limits_redis_settle import recording, unreachable
from tests.support.gateway import running_gateway
from tests.support.redis_server import free_port, start_redis, start_redis_as_before
from tests.support.upstream import Behaviour, MockUpstream

needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server"
)


def _stop_keeping_keys(port: int, server: subprocess.Popen[bytes]) -> None:
    with redis.Redis(port=port) as client:
        client.shutdown(save=True)
    server.wait(10)


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        server.wait(10)


async def _ledger(engine, team: str, at_ms: int, *tokens: int) -> None:  # type: ignore[no-untyped-def]
    """The rows the gateway's recorder writes for requests that used `tokens`."""
    rows = [_row(i, team, at_ms, n) for i, n in enumerate(tokens)]
    async with engine.begin() as conn:
        await conn.execute(usage_ledger.insert(), rows)


def _team(budget_tokens: int, per_user_tokens: int | None = None) -> TeamRules:
    per_user = None if per_user_tokens is None else PerUserSpec(tokens_per_day=per_user_tokens)
    return TeamRules(
        f"owed-{uuid.uuid4().hex[:8]}",
        True,
        frozenset(),
        budgets=(Budget(BudgetPeriod.DAY, budget_tokens, None),),
        per_user=per_user,
    )


async def _used(backend: RedisBackend, plan: Plan) -> list[tuple[int, int]]:
    snap = await backend.snapshot(plan, int(time.time() * 1000))
    return [(c.used, c.reserved) for c in snap.budgets if c is not None]


@needs_redis_server
async def test_the_outage_spend_is_charged_before_the_next_reserve_on_a_redis_back_with_its_keys(
    tmp_path, engine
) -> None:
    """Used 180 of 300; Redis stopped (its keys saved); five requests of 17 served unchecked;
    Redis back from its dump: the next request (100 more) no longer fits, and the counter
    says what the ledger says, 265. Before the fix it said 180 for the rest of the day."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    backend = RedisBackend.from_url(f"redis://127.0.0.1:{port}")
    limits = Limits(backend, ledger_reader(engine))
    team = _team(300)
    now = int(time.time() * 1000)
    plan = build_plan(team, "u", Estimate(100, 0), now)
    await _ledger(engine, team.name, now, 163)
    try:
        hold = await limits.reserve(plan, BackendErrorMode.CLOSED)  # rebuilt: 163
        limits.settle(hold, Actual(17, 0))
        await _ledger(engine, team.name, now, 17)
        await backend.flush()
        assert await _used(backend, plan) == [(180, 0)]

        _stop_keeping_keys(port, server)
        for _ in range(5):
            hold = await limits.reserve(plan, BackendErrorMode.OPEN)
            assert not hold.is_checked
            limits.settle(hold, Actual(17, 0))
            await _ledger(engine, team.name, now, 17)
        await backend.flush()  # Redis still away: they stay owed, none lost
        assert backend.lost_charges == 0

        server = start_redis_as_before(port, str(tmp_path))  # its keys back, its scripts gone
        with pytest.raises(BudgetExhausted):
            await limits.reserve(plan, BackendErrorMode.CLOSED)  # 265 + 100 > 300
        rule = plan.budgets[0]
        truth, _ = await ledger_reader(engine)(team.name, None, rule.starts_ms, rule.resets_ms)
        assert truth == 265
        assert await _used(backend, plan) == [(truth, 0)]
        assert backend.lost_charges == 0 and backend.lost_settles == 0
    finally:
        await limits.close()
        _stop(server)


@needs_redis_server
async def test_the_usage_view_counts_what_an_outage_spent(tmp_path, http) -> None:
    """The black-box probe: a team with a day budget, one request, Redis stopped with
    its keys saved, five requests served (open), Redis restarted from its dump, one more
    request: the admin usage view says what the ledger says."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    team = f"t{uuid.uuid4().hex[:8]}"
    try:
        async with MockUpstream("up") as up:
            up.behave(Behaviour(prompt_tokens=10, completion_tokens=5))
            bundle = (
                f'providers: {{up: {{type: openai-compatible, api_base: "{up.base_url}"}}}}\n'
                "models: {chat: {deployments: [{provider: up, model: m}]}}\n"
                "limits: {on_backend_error: open}\n"
                f'teams: {{{team}: {{models: ["chat"], max_tokens_default: 50, '
                "budgets: [{period: day, tokens: 100000}]}}\n"
            )
            async with running_gateway(
                tmp_path, bundle, redis_url=f"redis://127.0.0.1:{port}"
            ) as gw:
                client = await gw.openai(team)
                hi = [{"role": "user", "content": "hi"}]

                async def ask() -> None:
                    raw = await client.chat.completions.with_raw_response.create(
                        model="chat", messages=hi
                    )
                    assert raw.status_code == 200

                await ask()
                await asyncio.sleep(0.1)  # its settle lands before Redis saves
                _stop_keeping_keys(port, server)
                for _ in range(5):
                    await ask()
                server = start_redis_as_before(port, str(tmp_path))
                await ask()

                admin = {"authorization": f"Bearer {await gw.token(scopes=('gateway:admin',))}"}
                sums = ledger_reader(gw.services.engine)
                deadline = time.monotonic() + 15
                while True:  # the ledger writer lands rows about a second after a request
                    async with http.get(
                        f"{gw.origin}/admin/teams/{team}/usage", headers=admin
                    ) as response:
                        assert response.status == 200
                        day = (await response.json())["budgets"][0]
                    truth, _ = await sums(team, None, 0, 2**62)
                    if truth == 7 * 15 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                assert (day["used"], day["reserved"], truth) == (105, 0, 105)
    finally:
        _stop(server)


@needs_redis_server
async def test_a_replica_without_traffic_pays_its_outage_spend_once_redis_is_back(
    tmp_path, http
) -> None:
    """Two replicas share a Redis; one request (15 tokens) on the first; Redis stopped
    with its keys saved; five requests served unchecked (open) on the second; Redis back
    from its dump, and nothing more sent to the second: within a couple of seconds the
    first's usage view counts all six. Before, the second's 75 waited for its own next
    request, while the first admitted against 15."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    team = f"t{uuid.uuid4().hex[:8]}"
    try:
        async with MockUpstream("up") as up:
            up.behave(Behaviour(prompt_tokens=10, completion_tokens=5))
            bundle = (
                f'providers: {{up: {{type: openai-compatible, api_base: "{up.base_url}"}}}}\n'
                "models: {chat: {deployments: [{provider: up, model: m}]}}\n"
                "limits: {on_backend_error: open}\n"
                f'teams: {{{team}: {{models: ["chat"], max_tokens_default: 50, '
                "budgets: [{period: day, tokens: 100000}]}}\n"
            )
            redis_url = f"redis://127.0.0.1:{port}"
            (tmp_path / "first").mkdir()
            (tmp_path / "second").mkdir()
            async with (
                running_gateway(tmp_path / "first", bundle, redis_url=redis_url) as first,
                running_gateway(tmp_path / "second", bundle, redis_url=redis_url) as second,
            ):
                hi = [{"role": "user", "content": "hi"}]
                await (await first.openai(team)).chat.completions.create(model="chat", messages=hi)
                await asyncio.sleep(0.1)  # its settle lands before Redis saves
                _stop_keeping_keys(port, server)
                unchecked = await second.openai(team)
                for _ in range(5):
                    await unchecked.chat.completions.create(model="chat", messages=hi)
                server = start_redis_as_before(port, str(tmp_path))

                admin = {"authorization": f"Bearer {await first.token(scopes=('gateway:admin',))}"}
                deadline = time.monotonic() + 3
                while True:
                    async with http.get(
                        f"{first.origin}/admin/teams/{team}/usage", headers=admin
                    ) as response:
                        assert response.status == 200
                        used = (await response.json())["budgets"][0]["used"]
                    if used == 6 * 15 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                assert used == 6 * 15
                assert second.services.limits.backend.lost_charges == 0  # type: ignore[attr-defined]
    finally:
        _stop(server)


async def test_owed_charges_go_unasked_and_the_retry_stops_once_none_is_owed(
    redis_url: str,
) -> None:
    """No request, no flush: what is owed reaches Redis within about OWED_RETRY_S, and then
    no task is left behind (a healthy Redis costs nothing); none before anything is owed."""
    ticks = itertools.count(1)
    backend = RedisBackend.from_url(redis_url, clock=lambda: next(ticks))
    plan = build_plan(_team(10**9), "u", Estimate(100, 0), int(time.time() * 1000))
    try:
        await backend.seed(plan.team, ((plan.budgets[0], 10),))
        assert backend._collector is None
        backend.settle(Hold("unchecked-1", plan, 0, is_checked=False), Actual(5, 0))
        collector = backend._collector
        assert collector is not None
        await asyncio.wait_for(collector, OWED_RETRY_S + 1)
        assert len(backend._owed) == 0 and backend.lost_charges == 0
        assert await _used(backend, plan) == [(15, 0)]
    finally:
        await backend.close()


async def test_a_counter_rebuilt_after_the_request_finished_is_not_charged_again(
    redis_url: str,
) -> None:
    """A request served unchecked finishes at T. The team's counter was rebuilt from the
    ledger before T (its sum cannot hold the request's row): charged. The user's counter
    was rebuilt after T (its sum may hold it, here it does): not charged again."""
    instant = [1_000]
    backend = RedisBackend.from_url(redis_url, clock=lambda: instant[0])
    now = int(time.time() * 1000)
    plan = build_plan(_team(10**9, per_user_tokens=10**9), "u", Estimate(100, 0), now)
    team_rule, user_rule = plan.budgets
    try:
        instant[0] = 5_000  # rebuilt before it finished
        await backend.seed(plan.team, ((team_rule, 1_000),))
        instant[0] = 6_000  # it finishes
        backend.settle(Hold("unchecked-1", plan, 0, is_checked=False), Actual(40, 0))
        instant[0] = 6_001  # the user's counter rebuilt after: its ledger row is in the sum
        await backend.seed(plan.team, ((user_rule, 540),))
        await backend.flush()
        assert await _used(backend, plan) == [(1_040, 0), (540, 0)]
        assert len(backend._owed) == 0 and backend.lost_charges == 0
    finally:
        await backend.close()


async def test_a_counter_not_there_is_left_to_its_rebuild(redis_url: str) -> None:
    """Redis came back empty: the charge creates nothing (the next reserve rebuilds the
    counter from the ledger, which holds the request), and is not owed any more."""
    backend = RedisBackend.from_url(redis_url)
    now = int(time.time() * 1000)
    plan = build_plan(_team(10**9), "u", Estimate(100, 0), now)
    try:
        backend.settle(Hold("unchecked-1", plan, 0, is_checked=False), Actual(40, 0))
        await backend.flush()
        assert await backend._redis.exists(team_prefix(plan.team) + plan.budgets[0].key) == 0
        assert len(backend._owed) == 0 and backend.lost_charges == 0
    finally:
        await backend.close()


async def test_the_charge_script_adds_once_and_only_to_a_counter_rebuilt_before(
    redis_url: str,
) -> None:
    """CHARGE on the real Redis, one counter per case: rebuilt before the request finished
    (by this SEED, or the old one that wrote s = 1): added, once however often it is sent,
    and the key's TTL kept; rebuilt at or after it, never rebuilt (settles only), or not
    there: nothing added, nothing created."""
    client = aioredis.Redis.from_url(redis_url)
    sha = await client.script_load(CHARGE)
    now = int(time.time() * 1000)
    finished = 10_000
    cases = {"before": 9_999, "old-seed": 1, "at": 10_000, "after": 10_001, "unseeded": None}
    keys = {}
    try:
        for case, rebuilt in cases.items():
            plan = build_plan(_team(10**9), "u", Estimate(1, 0), now)
            key = team_prefix(plan.team) + plan.budgets[0].key
            fields = {"u": 100, "r": 0} if rebuilt is None else {"u": 100, "r": 0, "s": rebuilt}
            await client.hset(key, mapping=fields)
            await client.pexpire(key, 3_600_000)
            keys[case] = key
            charge = owed_charge("h1", plan, Actual(40, 0), finished)
            assert charge is not None
            command = charge_command(sha, charge)
            expire_at = await client.pexpiretime(key)
            for _ in range(3):  # sent again: its reply was lost
                await client.execute_command(*command)
            assert await client.pexpiretime(key) == expire_at
        used = {case: int(await client.hget(key, "u")) for case, key in keys.items()}
        assert used == {"before": 140, "old-seed": 140, "at": 100, "after": 100, "unseeded": 100}

        missing = build_plan(_team(10**9), "u", Estimate(1, 0), now)
        charge = owed_charge("h1", missing, Actual(40, 0), finished)
        assert charge is not None
        assert await client.execute_command(*charge_command(sha, charge)) == 0
        assert await client.exists(team_prefix(missing.team) + missing.budgets[0].key) == 0
    finally:
        await client.aclose()


async def test_seed_records_when_the_counter_was_rebuilt(redis_url: str) -> None:
    """s is the rebuild's instant (CHARGE compares it); a second seed changes nothing."""
    instant = [1_234]
    backend = RedisBackend.from_url(redis_url, clock=lambda: instant[0])
    plan = build_plan(_team(10**9), "u", Estimate(1, 0), int(time.time() * 1000))
    key = team_prefix(plan.team) + plan.budgets[0].key
    try:
        await backend.seed(plan.team, ((plan.budgets[0], 7),))
        instant[0] = 9_999
        await backend.seed(plan.team, ((plan.budgets[0], 7),))
        assert await backend._redis.hmget(key, ["u", "s"]) == [b"7", b"1234"]
    finally:
        await backend.close()


async def test_owed_charges_ride_ahead_of_the_next_reserve(redis_url: str) -> None:
    """Redis answers again: the next reserve carries the owed charges in its own write,
    ahead of it, a few at most (their script was loaded when the connection was made: a
    NOSCRIPT would have them land after the reserve); the usage view sends the rest."""
    ticks = itertools.count(1)  # each instant after the last: rebuilt before they finished
    backend = RedisBackend.from_url(redis_url, clock=lambda: next(ticks))
    now = int(time.time() * 1000)
    plan = build_plan(_team(10**9), "u", Estimate(100, 0), now)
    try:
        await backend.seed(plan.team, ((plan.budgets[0], 0),))
        for i in range(OWED_RIDE_ALONG + 2):
            backend.settle(Hold(f"unchecked-{i}", plan, 0, is_checked=False), Actual(1, 0))
        writes = recording(backend)
        assert isinstance(await backend.try_reserve(plan, "next", now), Hold)
        charge_sha, reserve_sha = backend._charge.sha, backend._reserve.sha
        assert writes == [[charge_sha] * OWED_RIDE_ALONG + [reserve_sha]]
        assert await _used(backend, plan) == [(OWED_RIDE_ALONG + 2, 100)]  # the view: the rest
        assert len(backend._owed) == 0 and backend.lost_charges == 0
    finally:
        await backend.close()


async def test_owed_charges_go_through_redis_py_when_the_fast_connection_is_off(
    redis_url: str,
) -> None:
    """No fast connection (resp.py): the charges go in a redis-py pipeline."""
    ticks = itertools.count(1)
    backend = RedisBackend(aioredis.Redis.from_url(redis_url), clock=lambda: next(ticks))
    now = int(time.time() * 1000)
    plan = build_plan(_team(10**9), "u", Estimate(100, 0), now)
    try:
        await backend.seed(plan.team, ((plan.budgets[0], 10),))
        for i in range(3):
            backend.settle(Hold(f"unchecked-{i}", plan, 0, is_checked=False), Actual(5, 0))
        await backend.flush()
        assert await _used(backend, plan) == [(25, 0)]
        assert len(backend._owed) == 0
    finally:
        await backend.close()


async def test_charges_redis_cannot_take_stay_owed_until_close() -> None:
    """Redis away: neither a flush nor a reserve loses what is owed; a process closing
    with Redis still away counts them lost."""
    backend = unreachable()
    now = int(time.time() * 1000)
    plan = build_plan(_team(10**9), "u", Estimate(1, 0), now)
    backend.settle(Hold("unchecked-1", plan, 0, is_checked=False), Actual(1, 0))
    backend.settle(Hold("unchecked-2", plan, 0, is_checked=False), None)  # nothing used
    await backend.flush()
    with pytest.raises(BackendUnavailable):
        await backend.try_reserve(plan, "next", now)
    assert len(backend._owed) == 1 and backend.lost_charges == 0
    await backend.close()
    assert backend.lost_charges == 1
