"""A budget added, or moved by a new timezone, while requests are in flight counts them.

SPEC §4 / issue 9: editing or adding a budget never changes recorded usage, and a budget
added mid-period counts what the team already spent (from the ledger). Requests in flight
when the edit lands reserved nothing on the new counter, and their ledger rows are not in
the sum that rebuilds it: each is charged to it when it finishes.

A real gateway (in process, 127.0.0.1) in front of a mock upstream that answers after a
second; the openai SDK as client; the admin API to edit the policy and read usage. Both
backends: in process, and Redis (the shared test Redis, a team name of this run's own).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

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
    price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}
teams:
  {team}:
    models: ["*"]
{budgets}"""
IN_FLIGHT = 5


async def ask(gw: RunningGateway, team: str, text: str) -> int:
    client = await gw.openai(team)
    answer = await client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": text}]
    )
    assert answer.usage is not None
    return answer.usage.total_tokens


async def usage_settles_at(gw: RunningGateway, team: str, expected: int) -> dict[str, Any]:
    """The team's day budget, once nothing is reserved and its used count is `expected`
    (a Redis settle lands a moment after the answer), or as it stands after 5 s."""
    admin = await gw.token(team, scopes=("gateway:admin",))
    async with admin_client(gw.origin, admin) as api:
        for _ in range(100):
            status, view = await api.call("GET", f"/admin/teams/{team}/usage")
            assert status == 200, view
            (budget,) = [b for b in view["budgets"] if b["period"] == "day"]
            if budget["reserved"] == 0 and budget["used"] == expected:
                break
            await asyncio.sleep(0.05)
    return dict(budget)


async def edit_policy_while_in_flight(
    gw: RunningGateway, up: MockUpstream, team: str, changes: dict[str, Any]
) -> int:
    """IN_FLIGHT requests sent, the team PATCHed while the upstream holds them, one more
    request at once (it rebuilds the new counter from the ledger meanwhile); the tokens
    all of them were billed."""
    in_flight = [asyncio.create_task(ask(gw, team, f"in flight {i}")) for i in range(IN_FLIGHT)]
    for _ in range(100):
        if len(up.requests) >= IN_FLIGHT:
            break
        await asyncio.sleep(0.02)
    admin = await gw.token(team, scopes=("gateway:admin",))
    async with admin_client(gw.origin, admin) as api:
        status, answer = await api.call(
            "PATCH",
            f"/admin/teams/{team}",
            {"changes": changes, "reason": "budget mid-flight", "base_version": 1},
        )
        assert status == 200, answer
    after = await ask(gw, team, "sent after the edit")
    return after + sum(await asyncio.gather(*in_flight))


@pytest.fixture(params=["in process", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, object]:
    if request.param == "in process":
        return {}
    return {"redis_url": request.getfixturevalue("redis_url")}


async def test_a_budget_added_while_requests_are_in_flight_counts_them(tmp_path, backend):
    team = f"added{uuid.uuid4().hex[:8]}"
    async with MockUpstream(name="up") as up:
        up.behave("slow", delay_s=1.0)
        policy = POLICY.format(base=up.base_url, team=team, budgets="")
        async with running_gateway(tmp_path, policy, **backend) as gw:
            spent = await edit_policy_while_in_flight(
                gw, up, team, {"budgets": [{"period": "day", "tokens": 100_000}]}
            )
            budget = await usage_settles_at(gw, team, spent)
            assert budget["used"] == spent, budget


async def test_a_timezone_moved_while_requests_are_in_flight_counts_them(tmp_path, backend):
    """A new timezone moves the period, so the budget counts on a new counter, rebuilt
    from the ledger (README): the requests in flight belong on it too."""
    team = f"moved{uuid.uuid4().hex[:8]}"
    budgets = "    budgets: [{period: day, tokens: 100000}]\n"
    async with MockUpstream(name="up") as up:
        up.behave("slow", delay_s=1.0)
        policy = POLICY.format(base=up.base_url, team=team, budgets=budgets)
        async with running_gateway(tmp_path, policy, **backend) as gw:
            admin = await gw.token(team, scopes=("gateway:admin",))
            async with admin_client(gw.origin, admin) as api:
                status, running = await api.call("GET", "/admin/policy")
            bundle = running["bundle"]
            bundle["timezone"] = "Pacific/Kiritimati"  # UTC+14: never the same day as UTC
            in_flight = [asyncio.create_task(ask(gw, team, f"old day {i}")) for i in range(3)]
            for _ in range(100):
                if len(up.requests) >= 3:
                    break
                await asyncio.sleep(0.02)
            async with admin_client(gw.origin, admin) as api:
                status, answer = await api.call(
                    "PUT", "/admin/policy", {"bundle": bundle, "reason": "tz", "base_version": 1}
                )
                assert status == 200, answer
            spent = await ask(gw, team, "new day") + sum(await asyncio.gather(*in_flight))
            budget = await usage_settles_at(gw, team, spent)
            assert budget["used"] == spent, budget
