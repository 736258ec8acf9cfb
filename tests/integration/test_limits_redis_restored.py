"""A Redis that comes back with keys older than the spend it saw (it crashed after its
last snapshot and was restarted from it; a replica that lagged was promoted) must not be
trusted with them: the budgets are rebuilt from the ledger, which holds every request.

Before, the restored counters were marked rebuilt already and the spend after the
snapshot was forgotten: a team at its day budget could spend it again.

A real gateway (in process, on 127.0.0.1) with a redis-server of the test's own, really
killed and started from its older dump.rdb; the openai SDK as the client."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import openai
import pytest
import redis
import redis.asyncio as aioredis

from gateway.limits import redis_backend
from gateway.limits.backend import Hold, NeedsSeed
from gateway.limits.plan import Estimate, build_plan
from gateway.limits.redis_backend import RedisBackend
from gateway.limits.redis_generation import GENERATION, GENERATION_KEY
from gateway.policy.compiled import Budget, BudgetPeriod, TeamRules
from tests.integration.test_limits_redis_keys_lost import settled, team_budgets, used
from tests.support.gateway import running_gateway
from tests.support.mock_policy import MOCK_CHAT
from tests.support.redis_server import free_port, start_redis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

BUDGET = 600  # tokens a day: a few requests of the mock's (~30 tokens and a 100 allowance)
POLICY = (
    MOCK_CHAT
    + f"""teams:
  lost:
    models: ["*"]
    max_tokens_default: 100
    budgets:
      - {{period: day, tokens: {BUDGET}}}
"""
)


def crash(server: subprocess.Popen[bytes]) -> None:
    """Killed, as a crash: nothing saved since the last snapshot."""
    server.kill()
    server.wait(10)


async def spend_until_refused(client: openai.AsyncOpenAI) -> int:
    """Requests until the day budget refuses one; how many were served."""
    for served in range(100):
        try:
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": f"say {served}"}]
            )
        except openai.RateLimitError as error:
            assert error.code == "insufficient_quota", error.body
            return served
    raise AssertionError("the budget never refused")


@pytest.mark.parametrize("connection", ["tcp", "unix"])
async def test_a_redis_restored_from_an_older_snapshot_does_not_forget_the_spend_since(
    tmp_path, connection: str
) -> None:
    """Over TCP (the fast connection and redis-py) and a unix socket (redis-py alone)."""
    port = free_port()
    socket = tmp_path / "redis.sock"
    options = ("--unixsocket", str(socket))
    url = f"redis://127.0.0.1:{port}" if connection == "tcp" else f"unix://{socket}"
    server = start_redis(port, str(tmp_path), *options)
    try:
        async with running_gateway(tmp_path, POLICY, redis_url=url) as gw:
            client = await gw.openai("lost", max_retries=0)
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "before the snapshot"}]
            )
            await settled(gw)
            with redis.Redis(port=port) as admin:
                admin.save()  # the snapshot: one request's spend
            served = await spend_until_refused(client)  # the rest of the day's budget
            assert served > 0
            spent = used(await settled(gw))["tokens"]
            assert spent > BUDGET - 150  # close to the budget: the next one does not fit

            crash(server)
            server = start_redis(port, str(tmp_path), *options)  # the snapshot's keys, older
            with redis.Redis(port=port) as restored:
                assert restored.dbsize() > 0  # it did come back with keys

            # The spend since the snapshot still counts: refused, and the view says so.
            with pytest.raises(openai.RateLimitError) as refused:
                await client.chat.completions.create(
                    model="chat", messages=[{"role": "user", "content": "once more"}]
                )
            assert refused.value.code == "insufficient_quota"
            assert used(await team_budgets(gw))["tokens"] == spent
    finally:
        server.terminate()
        server.wait(10)


async def test_the_view_after_a_restore_is_the_ledgers_and_settles_add_to_it(tmp_path) -> None:
    """The usage view right after the restore reads the rebuilt counters (not the
    snapshot's), and the next request's settle adds to them once."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    policy = POLICY.replace(f"tokens: {BUDGET}", "tokens: 1000000")
    try:
        async with running_gateway(tmp_path, policy, redis_url=f"redis://127.0.0.1:{port}") as gw:
            client = await gw.openai("lost")
            ask = {"model": "chat", "messages": [{"role": "user", "content": "count"}]}
            await client.chat.completions.create(**ask)  # type: ignore[call-overload]
            await settled(gw)
            with redis.Redis(port=port) as admin:
                admin.save()
            await asyncio.gather(*(client.chat.completions.create(**ask) for _ in range(5)))  # type: ignore[call-overload]
            spent = used(await settled(gw))["tokens"]

            crash(server)
            server = start_redis(port, str(tmp_path))
            assert used(await team_budgets(gw))["tokens"] == spent

            more = await client.chat.completions.create(**ask)  # type: ignore[call-overload]
            assert more.usage is not None
            assert used(await settled(gw))["tokens"] == spent + more.usage.total_tokens
    finally:
        server.terminate()
        server.wait(10)


async def test_the_generation_moves_only_when_the_server_is_another(tmp_path) -> None:
    """The generation script itself: the same server answers the same generation; a key
    written under another run_id (a restored snapshot's, a promoted replica's) moves it
    on, once; with no record (a first use, or flushed) it takes the caller's generation,
    so a replica reconnecting after a flush stays with the others."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    try:
        async with aioredis.Redis(port=port) as client:
            generation = client.register_script(GENERATION)
            assert await generation(keys=[GENERATION_KEY], args=[0]) == 0
            assert await generation(keys=[GENERATION_KEY], args=[0]) == 0
            await client.hset(GENERATION_KEY, "run", "another-server")
            assert await generation(keys=[GENERATION_KEY], args=[0]) == 1
            assert await generation(keys=[GENERATION_KEY], args=[5]) == 1  # recorded: kept
            await client.flushall()
            assert await generation(keys=[GENERATION_KEY], args=[1]) == 1  # the caller's
            assert await generation(keys=[GENERATION_KEY], args=[0]) == 1
    finally:
        server.terminate()
        server.wait(10)


async def test_a_redis_whose_acl_refuses_info_still_serves_the_limits(tmp_path, caplog) -> None:
    """A user without INFO (some managed Redis services restrict it): the generation check
    is refused, a warning says a restore would go unnoticed, and the limits work as
    before generations existed (the keys keep their plain names)."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    try:
        with redis.Redis(port=port) as admin:
            admin.execute_command("ACL", "SETUSER", "gw", "on", ">pw", "~*", "+@all", "-info")
        url = f"redis://gw:pw@127.0.0.1:{port}"
        async with running_gateway(tmp_path, POLICY, redis_url=url) as gw:
            client = await gw.openai("lost", max_retries=0)
            served = await spend_until_refused(client)
            assert served > 0
            assert used(await settled(gw))["tokens"] > 0
        with redis.Redis(port=port) as admin:
            assert not admin.exists(GENERATION_KEY)
            assert admin.exists("gw:{lost}:seeded")  # generation 0's names
        warned = [r for r in caplog.records if "refused the generation check" in r.message]
        assert warned
    finally:
        server.terminate()
        server.wait(10)


async def test_an_open_connection_learns_a_new_generation_within_the_check(
    tmp_path, monkeypatch
) -> None:
    """A connection that stays open asks again every GENERATION_CHECK_S: a record moved on
    by someone else (a flush re-recorded by another replica's reconnection, a server
    swapped behind a proxy) is followed, and the next reserve names the new keys (unseeded
    there: rebuilt from the ledger)."""
    monkeypatch.setattr(redis_backend, "GENERATION_CHECK_S", 0.05)
    port = free_port()
    server = start_redis(port, str(tmp_path))
    backend = RedisBackend.from_url(f"redis://127.0.0.1:{port}")
    now = int(time.time() * 1000)
    plan = build_plan(
        TeamRules("gen", True, frozenset(), budgets=(Budget(BudgetPeriod.DAY, 1000, None),)),
        "u",
        Estimate(10, 0),
        now,
    )
    try:
        assert isinstance(await backend.try_reserve(plan, "a", now), NeedsSeed)
        await backend.seed(plan.team, tuple((c, 0) for c in plan.budgets))
        assert isinstance(await backend.try_reserve(plan, "b", now), Hold)
        async with aioredis.Redis(port=port) as client:
            await client.hset(GENERATION_KEY, "run", "another-server")
        for _ in range(100):
            if backend._generation.value == 1:
                break
            await asyncio.sleep(0.02)
        assert backend._generation.value == 1
        assert isinstance(await backend.try_reserve(plan, "c", now), NeedsSeed)
    finally:
        await backend.close()
        server.terminate()
        server.wait(10)
