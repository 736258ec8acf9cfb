"""A budget moved by an admin while requests are in flight keeps counting them.

SPEC §4: concurrent requests can never spend past a budget by more than one request's
estimate error. A budget whose period changes (day → week), or whose days move with a
new `timezone`, counts on a new counter, rebuilt from the ledger, which holds only
finished requests: the reservations of the requests in flight come with it, so the
requests sent after the edit are refused when they would overrun, not admitted.

A real gateway (in process, 127.0.0.1) in front of a mock upstream that answers after a
second and a half; the openai SDK as client; the admin API to edit the policy and read
usage. Both backends: in process, and Redis (the shared test Redis, a team of its own).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import openai
import pytest

from tests.support.admin import admin_client
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat:
    deployments: [{{provider: up, model: upstream-chat}}]
teams:
  {team}:
    models: ["*"]
    budgets: [{{period: day, tokens: 100}}]
"""
IN_FLIGHT = 3


@pytest.fixture(params=["in process", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, object]:
    if request.param == "in process":
        return {}
    return {"redis_url": request.getfixturevalue("redis_url")}


async def ask(client: openai.AsyncOpenAI, text: str) -> int | str:
    """The tokens the answer used, or the code of the 429 that refused it."""
    try:
        answer = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": text}], max_tokens=20
        )
    except openai.RateLimitError as refused:
        return str(refused.code)
    assert answer.usage is not None
    return answer.usage.total_tokens


async def the_budget(gw: RunningGateway, team: str) -> dict[str, Any]:
    admin = await gw.token(team, scopes=("gateway:admin",))
    async with admin_client(gw.origin, admin) as api:
        status, view = await api.call("GET", f"/admin/teams/{team}/usage")
    assert status == 200, view
    (budget,) = view["budgets"]
    return dict(budget)


async def move_the_budget(gw: RunningGateway, team: str, edit: str) -> None:
    admin = await gw.token(team, scopes=("gateway:admin",))
    async with admin_client(gw.origin, admin) as api:
        if edit == "period":
            changes = {"budgets": [{"period": "week", "tokens": 100}]}
            body = {"changes": changes, "reason": "week", "base_version": 1}
            status, answer = await api.call("PATCH", f"/admin/teams/{team}", body)
        else:
            status, running = await api.call("GET", "/admin/policy")
            bundle = running["bundle"]
            bundle["timezone"] = "Europe/Berlin"
            body = {"bundle": bundle, "reason": "tz", "base_version": 1}
            status, answer = await api.call("PUT", "/admin/policy", body)
    assert status == 200, answer


@pytest.mark.parametrize("edit", ["period", "timezone"])
async def test_requests_after_a_budget_moved_mid_flight_cannot_overrun_it(tmp_path, backend, edit):
    """100 tokens a day, three requests in flight hold most of it; the budget moves to a
    week (or to Berlin's days): the new counter shows them reserved at once, the next
    three requests get 429 insufficient_quota, and once the three end nothing stays
    reserved and used is what they really used, counted once."""
    team = f"moved{uuid.uuid4().hex[:8]}"
    async with MockUpstream(name="up") as up:
        up.behave("slow", delay_s=1.5)
        async with running_gateway(
            tmp_path, POLICY.format(base=up.base_url, team=team), **backend
        ) as gw:
            client = await gw.openai(team)
            in_flight = [asyncio.create_task(ask(client, f"first {i}")) for i in range(IN_FLIGHT)]
            for _ in range(100):
                if len(up.requests) >= IN_FLIGHT:
                    break
                await asyncio.sleep(0.02)
            before = await the_budget(gw, team)
            assert before["reserved"] > 0 and before["remaining"] < before["reserved"] / 3
            await move_the_budget(gw, team, edit)
            moved = await the_budget(gw, team)
            assert (moved["used"], moved["reserved"]) == (0, before["reserved"]), moved

            after = await asyncio.gather(*(ask(client, f"after {i}") for i in range(3)))
            assert after == ["insufficient_quota"] * 3
            answered = await asyncio.gather(*in_flight)
            spent = sum(tokens for tokens in answered if isinstance(tokens, int))
            assert all(isinstance(tokens, int) for tokens in answered), answered
            for _ in range(100):  # a Redis settle lands a moment after the answer
                ended = await the_budget(gw, team)
                if ended["reserved"] == 0 and ended["used"] == spent:
                    break
                await asyncio.sleep(0.05)
            assert (ended["used"], ended["reserved"]) == (spent, 0), ended
            assert len(up.requests) == IN_FLIGHT
