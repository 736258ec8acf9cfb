"""A budget that leaves the policy and comes back in the same period counts what was
spent while it was gone (policy/budget_eras.py), on one process and on Redis: removing
a budget, or moving the timezone away and back, must not let a team spend past it."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from pathlib import Path

import openai
import pytest

from gateway.limits.plan import Estimate, build_plan
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.upstream import Behaviour, MockUpstream

BUNDLE = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat:
    deployments: [{{provider: up, model: upstream-chat}}]
    price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}
timezone: {timezone}
teams:
  {team}:
    models: ["*"]
    max_tokens_default: 20
    budgets: [{budgets}]
"""
DAY = "{period: day, tokens: 100}"  # 15 tokens a request (10 + 5): 6 fit, a 7th does not
MONTH = "{period: month, tokens: 100000}"
SPENT = 15


def write(gw_dir: Path, base: str, team: str, budgets: str, timezone: str = "UTC") -> None:
    text = BUNDLE.format(base=base, team=team, budgets=budgets, timezone=timezone)
    (gw_dir / "policies" / "bundle.yaml").write_text(text)


async def enforced(gw: RunningGateway, team: str, budgets: int, timezone: str) -> None:
    """Wait until the folder's edit is the running version."""
    for _ in range(200):
        policy = gw.services.policy.current()
        if policy.timezone == timezone and len(policy.teams[team].budgets) == budgets:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the edited policy was never enforced")


async def ledger_holds(tmp_path: Path, rows: int) -> None:
    """Wait until the ledger writer has stored `rows` rows (a rebuild sums the ledger)."""

    def count() -> int:
        with sqlite3.connect(tmp_path / "gateway.db") as db:
            return int(db.execute("SELECT count(*) FROM usage_ledger").fetchone()[0])

    for _ in range(200):
        if await asyncio.to_thread(count) >= rows:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the ledger never held {rows} rows")


async def spend(client: openai.AsyncOpenAI, requests: int) -> None:
    for _ in range(requests):
        await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )


async def day_used(gw: RunningGateway, team: str) -> int:
    rules = gw.services.policy.current().teams[team]
    plan = build_plan(rules, "tester", Estimate(0, 0), gw.services.limits.clock(), timezone="UTC")
    counter = (await gw.services.limits.snapshot(plan)).budgets[0]
    assert counter is not None
    return counter.used


async def away_from_midnight() -> None:
    """The test's requests must fall in one UTC day (and one Kiritimati day)."""
    for zone_offset_h in (0, 14):
        to_midnight = 86_400 - (time.time() + zone_offset_h * 3600) % 86_400
        if to_midnight < 60:
            await asyncio.sleep(to_midnight + 1)


@pytest.fixture(params=["in process", "redis"])
def limits_settings(request: pytest.FixtureRequest) -> dict[str, object]:
    if request.param == "in process":
        return {}
    return {"redis_url": request.getfixturevalue("redis_url")}


@pytest.mark.parametrize("how", ["budget removed", "timezone moved"])
async def test_a_budget_back_in_the_same_period_counts_the_spend_made_while_it_was_away(
    tmp_path: Path, limits_settings: dict[str, object], how: str
) -> None:
    """2 requests under a day budget of 100 tokens; the budget leaves (removed, or the
    policy's timezone moved so the UTC day is not in force); 3 more; it comes back. The
    counter holds all 5 (75 tokens, what the ledger says), and the next request, whose
    estimate no longer fits, is refused."""
    await away_from_midnight()
    team = f"back-{uuid.uuid4().hex[:8]}"  # Redis keys are per team: a run of its own
    async with MockUpstream("up") as up:
        up.behave(Behaviour(prompt_tokens=10, completion_tokens=5))
        first = BUNDLE.format(
            base=up.base_url, team=team, budgets=f"{DAY}, {MONTH}", timezone="UTC"
        )
        async with running_gateway(tmp_path, first, **limits_settings) as gw:
            client = await gw.openai(team)
            await spend(client, 2)
            assert await day_used(gw, team) == 2 * SPENT

            if how == "budget removed":
                write(tmp_path, up.base_url, team, MONTH)
                await enforced(gw, team, 1, "UTC")
            else:
                write(tmp_path, up.base_url, team, f"{DAY}, {MONTH}", "Pacific/Kiritimati")
                await enforced(gw, team, 2, "Pacific/Kiritimati")
            await spend(client, 3)
            await ledger_holds(tmp_path, 5)

            write(tmp_path, up.base_url, team, f"{DAY}, {MONTH}")
            await enforced(gw, team, 2, "UTC")
            with pytest.raises(openai.RateLimitError) as refused:
                await spend(client, 1)
            assert refused.value.code == "insufficient_quota"
            assert await day_used(gw, team) == 5 * SPENT
