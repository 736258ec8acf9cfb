"""Requests reserved in Redis that finish while it is away: their settles are kept and
delivered once Redis answers again, freeing their holds (budget reservation, concurrency
slot) and charging their usage exactly once; and a settle that lands on a Redis that came
back empty adds nothing: the ledger rebuild counts the request, once. Real redis-servers
of the tests' own, really stopped and started again (with and without their keys)."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid

import pytest
import redis.asyncio as aioredis

from gateway.limits import redis_backend
from gateway.limits.backend import Hold
from gateway.limits.plan import Actual, Estimate, Plan, build_plan
from gateway.limits.rebuild import ledger_reader
from gateway.limits.redis_backend import RedisBackend
from gateway.limits.redis_calls import MAY_HAVE_RUN, charge_command, late_settle, team_prefix
from gateway.limits.redis_scripts import CHARGE
from gateway.limits.service import Limits
from gateway.policy.compiled import Budget, BudgetPeriod, PerUserSpec, TeamRules
from gateway.policy.schema import BackendErrorMode, LimitsSpec
from tests.integration.test_limits_redis_outage_charge import _ledger, _stop, _stop_keeping_keys
from tests.support.gateway import running_gateway
from tests.support.redis_server import free_port, start_redis, start_redis_as_before
from tests.support.upstream import Behaviour, MockUpstream

needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server"
)
CLOSED = BackendErrorMode.CLOSED
USED = 57  # each request's true usage; each reserves 100 (its estimate)


def _team(concurrency: int = 1000) -> TeamRules:
    return TeamRules(
        f"late-{uuid.uuid4().hex[:8]}",
        True,
        frozenset(),
        budgets=(Budget(BudgetPeriod.DAY, 10**6, None),),
        per_user=PerUserSpec(tokens_per_day=10**6),
        limits=LimitsSpec(concurrency=concurrency),
    )


async def _view(backend: RedisBackend, plan: Plan) -> tuple[list[tuple[int, int]], int]:
    """(used, reserved) per budget counter, and the requests in flight."""
    snap = await backend.snapshot(plan, int(time.time() * 1000))
    budgets = [(c.used, c.reserved) for c in snap.budgets if c is not None]
    return budgets, snap.concurrency[0]


async def _truth(engine, plan: Plan) -> int:  # type: ignore[no-untyped-def]
    rule = plan.budgets[0]
    tokens, _ = await ledger_reader(engine)(plan.team, None, rule.starts_ms, rule.resets_ms)
    return tokens


@needs_redis_server
async def test_settles_made_while_redis_was_away_land_once_it_is_back_with_its_keys(
    tmp_path, engine
) -> None:
    """Three requests reserved (concurrency 3: full); Redis stopped, its keys saved; they
    finish (their rows land); Redis back from its dump: their holds are freed (a fourth
    request is admitted at once) and their usage charged, the counters equal the ledger.
    Before, the settles were lost: used stayed 0, 300 stayed reserved and the three slots
    taken until the lease ended."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    backend = RedisBackend.from_url(f"redis://127.0.0.1:{port}")
    limits = Limits(backend, ledger_reader(engine))
    plan = build_plan(_team(concurrency=3), "u", Estimate(100, 0), int(time.time() * 1000))
    try:
        holds = [await limits.reserve(plan, CLOSED) for _ in range(3)]
        assert all(h.is_checked for h in holds)
        _stop_keeping_keys(port, server)
        for hold in holds:
            limits.settle(hold, Actual(USED, 0))
            await _ledger(engine, plan.team, int(time.time() * 1000), USED)
        await backend.flush()  # Redis still away: kept

        server = start_redis_as_before(port, str(tmp_path))  # its keys back, the holds with them
        fourth = await limits.reserve(plan, CLOSED)  # the late settles ride ahead of it
        assert fourth.is_checked
        truth = await _truth(engine, plan)
        assert truth == 3 * USED
        assert await _view(backend, plan) == ([(truth, 100), (truth, 100)], 1)
        limits.settle(fourth, None)
        await backend.flush()
        assert await _view(backend, plan) == ([(truth, 0), (truth, 0)], 0)
        assert backend.lost_settles == 0 and backend.lost_charges == 0
    finally:
        await limits.close()
        _stop(server)


@needs_redis_server
async def test_late_settles_offered_just_before_a_reserve_still_land_ahead_of_it(
    tmp_path, engine, monkeypatch
) -> None:
    """Redis back from its dump (its scripts forgotten); the owed late settles are on their
    way (the retry task's offer) when a reserve comes: they land first, freeing their
    slots. Before, they met NOSCRIPT, the script was loaded again in a round trip of its
    own, and the reserve sent meanwhile ran first: 429 'in flight 3' (CI saw it)."""
    monkeypatch.setattr(redis_backend, "OWED_RETRY_S", 60.0)  # this test makes the offer
    port = free_port()
    server = start_redis(port, str(tmp_path))
    backend = RedisBackend.from_url(f"redis://127.0.0.1:{port}")
    limits = Limits(backend, ledger_reader(engine))
    plan = build_plan(_team(concurrency=3), "u", Estimate(100, 0), int(time.time() * 1000))
    try:
        holds = [await limits.reserve(plan, CLOSED) for _ in range(3)]
        _stop_keeping_keys(port, server)
        for hold in holds:
            limits.settle(hold, Actual(USED, 0))
        await backend.flush()  # Redis away: kept

        server = start_redis_as_before(port, str(tmp_path))
        offer = asyncio.create_task(backend.flush())  # what the retry task does
        await asyncio.sleep(0)  # it took them and is connecting
        fourth = await limits.reserve(plan, CLOSED)
        await offer
        assert fourth.is_checked
        assert (await _view(backend, plan))[1] == 1
    finally:
        await limits.close()
        _stop(server)


@needs_redis_server
async def test_a_late_settle_whose_hold_was_swept_meanwhile_charges_without_freeing_twice(
    tmp_path, engine
) -> None:
    """The holds' leases ended during the outage and another replica swept them before
    the late settles arrived: the usage is still charged, once, and nothing is freed
    twice (reserved stays 0, not negative)."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    url = f"redis://127.0.0.1:{port}"
    backend = RedisBackend.from_url(url)
    other = RedisBackend.from_url(url)
    limits = Limits(backend, ledger_reader(engine))
    now = int(time.time() * 1000)
    plan = build_plan(_team(), "u", Estimate(100, 0), now)
    try:
        await backend.seed(plan.team, tuple((c, 0) for c in plan.budgets))
        past = now - plan.lease_ms - 1_000  # reserved long ago: their leases have ended
        holds = [await backend.try_reserve(plan, f"old-{i}", past) for i in range(2)]
        assert all(isinstance(h, Hold) for h in holds)
        _stop_keeping_keys(port, server)
        await asyncio.sleep(0.1)  # they finish later: their settles never reach Redis
        for hold in holds:
            assert isinstance(hold, Hold)
            limits.settle(hold, Actual(USED, 0))
        await backend.flush()

        server = start_redis_as_before(port, str(tmp_path))
        assert await _view(other, plan) == ([(0, 0), (0, 0)], 0)  # swept
        await backend.flush()  # the late settles land
        await backend.flush()  # sent again (a lost reply): nothing more
        assert await _view(other, plan) == ([(2 * USED, 0), (2 * USED, 0)], 0)
    finally:
        await limits.close()
        await other.close()
        _stop(server)


@needs_redis_server
async def test_a_settle_on_a_redis_back_empty_is_counted_once_by_the_rebuild(
    tmp_path, engine
) -> None:
    """Nine requests reserved; Redis restarted empty (nothing saved) while they run; they
    finish on it (their settles land first, their rows a moment later); the next request
    rebuilds the counters from the ledger: used equals the ledger, team and user. Before,
    the settles created the counters unmarked and the rebuild added the ledger's sum on
    top: every one of them counted twice."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    backend = RedisBackend.from_url(f"redis://127.0.0.1:{port}")
    limits = Limits(backend, ledger_reader(engine))
    now = int(time.time() * 1000)
    plan = build_plan(_team(), "u", Estimate(100, 0), now)
    await _ledger(engine, plan.team, now, 200)  # spent earlier today
    try:
        holds = [await limits.reserve(plan, CLOSED) for _ in range(9)]
        _stop(server)  # no dump: it comes back empty
        await asyncio.sleep(0.1)  # the gateway sees its connection close
        server = start_redis(port, str(tmp_path))
        for hold in holds:
            limits.settle(hold, Actual(USED, 0))
        await backend.flush()
        await _ledger(engine, plan.team, now, *[USED] * 9)  # the writer lands their rows

        hold = await limits.reserve(plan, CLOSED)
        truth = await _truth(engine, plan)
        assert truth == 200 + 9 * USED
        assert await _view(backend, plan) == ([(truth, 100), (truth, 100)], 1)
        assert hold.is_checked and backend.lost_settles == 0
    finally:
        await limits.close()
        _stop(server)


@needs_redis_server
async def test_late_settles_on_a_redis_back_empty_are_left_to_the_rebuild(tmp_path, engine) -> None:
    """Settles made while Redis was away, delivered to a Redis that came back empty, while
    the team's other replica rebuilt its counters meanwhile or not: used equals the ledger."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    backend = RedisBackend.from_url(f"redis://127.0.0.1:{port}")
    limits = Limits(backend, ledger_reader(engine))
    now = int(time.time() * 1000)
    plan = build_plan(_team(), "u", Estimate(100, 0), now)
    try:
        holds = [await limits.reserve(plan, CLOSED) for _ in range(4)]
        _stop(server)
        for hold in holds:
            limits.settle(hold, Actual(USED, 0))
        await backend.flush()
        await _ledger(engine, plan.team, now, *[USED] * 4)
        server = start_redis(port, str(tmp_path))
        await backend.flush()  # delivered: the counters are not there, nothing created
        await limits.reserve(plan, CLOSED)  # rebuilt from the ledger
        truth = await _truth(engine, plan)
        assert await _view(backend, plan) == ([(truth, 100), (truth, 100)], 1)
        assert truth == 4 * USED
    finally:
        await limits.close()
        _stop(server)


async def test_a_settle_a_hung_redis_runs_after_its_late_settle_adds_nothing(
    redis_url: str,
) -> None:
    """A settle Redis read and never answered (hung) is delivered late; when Redis wakes it
    runs the original too: counted once, whichever runs first."""
    client = aioredis.Redis.from_url(redis_url)
    backend = RedisBackend.from_url(redis_url)
    sha = await client.script_load(CHARGE)
    now = int(time.time() * 1000)
    try:
        for late_first in (True, False):
            plan = build_plan(_team(), "u", Estimate(100, 0), now)
            await backend.seed(plan.team, tuple((c, 0) for c in plan.budgets))
            hold = await backend.try_reserve(plan, "h", now)
            assert isinstance(hold, Hold)
            late = late_settle("h", plan, Actual(USED, 0), now + 10, may_have_run=True)
            assert late is not None and late.late_settle == MAY_HAVE_RUN
            if late_first:
                await client.execute_command(*charge_command(sha, late))
            await backend._settle_now(hold, Actual(USED, 0))  # the original, run late
            for _ in range(2):  # first or again: nothing more
                await client.execute_command(*charge_command(sha, late))
            assert await _view(backend, plan) == ([(USED, 0), (USED, 0)], 0)
            assert await client.hget(team_prefix(plan.team) + "holds", "h") is None
    finally:
        await client.aclose()
        await backend.close()


@needs_redis_server
async def test_requests_that_finish_while_redis_is_down_free_their_slots_once_it_is_back(
    tmp_path, http
) -> None:
    """The probe, through the gateway: concurrency 2, two requests in flight when Redis
    stops (its keys saved), both answered 200; Redis back from its dump: the next request
    is served at once (before, 429 'in flight 2' until the leases ended) and the usage
    view says what the ledger says (before, 0 used: the two were never charged)."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    team = f"t{uuid.uuid4().hex[:8]}"
    try:
        async with MockUpstream("up") as up:
            up.behave(Behaviour(prompt_tokens=10, completion_tokens=5, delay_s=1.0))
            bundle = (
                f'providers: {{up: {{type: openai-compatible, api_base: "{up.base_url}"}}}}\n'
                "models: {chat: {deployments: [{provider: up, model: m}]}}\n"
                f'teams: {{{team}: {{models: ["chat"], max_tokens_default: 50, '
                "budgets: [{period: day, tokens: 100000}], limits: {concurrency: 2}}}\n"
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

                in_flight = [asyncio.create_task(ask()) for _ in range(2)]
                await up.wait_for_requests(2)  # both reserved in Redis
                _stop_keeping_keys(port, server)
                await asyncio.gather(*in_flight)  # they finish while Redis is down
                await asyncio.sleep(0.5)  # Redis stays away a moment: their settles fail
                server = start_redis_as_before(port, str(tmp_path))
                up.behave(Behaviour(prompt_tokens=10, completion_tokens=5))
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
                    if truth == 3 * 15 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                assert (day["used"], day["reserved"], truth) == (45, 0, 45)
    finally:
        _stop(server)
