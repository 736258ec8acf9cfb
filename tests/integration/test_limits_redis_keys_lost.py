"""Redis loses its keys (FLUSHALL, or a restart without persistence) right after a burst:
the budget counters rebuilt from the ledger hold every request the gateway finished, as
the SDK saw them billed. Their usage was in the lost keys and their ledger rows may still
wait in the writer's batch; the rebuild waits for this process's writer first.

A real gateway (in process, on 127.0.0.1) with a redis-server of the test's own, the
built-in mock provider, the openai SDK as the client, the admin usage view to read."""

from __future__ import annotations

import asyncio
import shutil
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.support.gateway import RunningGateway, running_gateway
from tests.support.mock_policy import MOCK_CHAT
from tests.support.redis_server import free_port, start_redis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

POLICY = (
    MOCK_CHAT
    + """teams:
  lost:
    models: ["*"]
    budgets:
      - {period: day, tokens: 1000000}
      - {period: month, usd: 100}
"""
)
BURST = 40


async def team_budgets(gw: RunningGateway) -> list[dict[str, Any]]:
    admin = await gw.token("lost", scopes=("gateway:admin",))
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{gw.origin}/admin/teams/lost/usage", headers={"authorization": f"Bearer {admin}"}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return list((await response.json())["budgets"])


async def settled(gw: RunningGateway) -> list[dict[str, Any]]:
    """The budgets once every request's settle has reached Redis (nothing reserved)."""
    for _ in range(100):
        budgets = await team_budgets(gw)
        if all(Decimal(budget["reserved"]) == 0 for budget in budgets):
            return budgets
        await asyncio.sleep(0.02)
    raise AssertionError(f"a reservation is still held: {budgets}")


def used(budgets: list[dict[str, Any]]) -> dict[str, Decimal]:
    """Tokens as integers, USD as decimal text: both exact."""
    return {budget["unit"]: Decimal(budget["used"]) for budget in budgets}


async def test_counters_rebuilt_right_after_a_burst_hold_the_whole_burst(tmp_path) -> None:
    port = free_port()
    server = start_redis(port, str(tmp_path))
    try:
        async with running_gateway(tmp_path, POLICY, redis_url=f"redis://127.0.0.1:{port}") as gw:
            client = await gw.openai("lost")
            answers = await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="chat", messages=[{"role": "user", "content": f"count to {i}"}]
                    )
                    for i in range(BURST)
                )
            )
            spent = sum(answer.usage.total_tokens for answer in answers if answer.usage)
            before = used(await settled(gw))
            assert before["tokens"] == spent

            async with aioredis.Redis(port=port) as redis:
                await redis.flushall()  # every counter gone, the rows maybe not yet stored
            assert used(await team_budgets(gw)) == before  # rebuilt from the ledger at once

            # And the next request's settle adds to the rebuilt counters, once.
            more = await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "one more"}]
            )
            assert more.usage is not None
            after = used(await settled(gw))
            assert after["tokens"] == spent + more.usage.total_tokens
            assert after["usd"] > before["usd"]
    finally:
        server.terminate()
        server.wait(10)


async def test_with_two_replicas_the_other_ones_last_rows_count_too(tmp_path) -> None:
    """Two gateways on one database and one Redis, a burst over both, Redis flushed, the
    usage read at once from the first: the second one's last batch (its writer stores
    rows 0.2 s apart) is in the ledger by the time the counters are rebuilt."""
    port = free_port()
    server = start_redis(port, str(tmp_path))
    url = f"redis://127.0.0.1:{port}"
    try:
        async with (
            running_gateway(tmp_path, POLICY, redis_url=url) as first,
            running_gateway(tmp_path, POLICY, redis_url=url) as second,
        ):
            clients = [await first.openai("lost"), await second.openai("lost")]
            answers = await asyncio.gather(
                *(
                    clients[i % 2].chat.completions.create(
                        model="chat", messages=[{"role": "user", "content": f"count to {i}"}]
                    )
                    for i in range(BURST)
                )
            )
            spent = sum(answer.usage.total_tokens for answer in answers if answer.usage)
            before = used(await settled(first))
            assert before["tokens"] == spent

            async with aioredis.Redis(port=port) as redis:
                await redis.flushall()
            assert used(await team_budgets(first)) == before
    finally:
        server.terminate()
        server.wait(10)
