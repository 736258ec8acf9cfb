"""Per-user budgets of any period and unit (`per_user.budgets`) through the gateway, with
the official openai SDK: one user past a weekly token or a monthly USD budget gets 429
insufficient_quota while another user of the team goes on; the usage view shows each
user's budgets; a restart (and on Redis, lost keys) rebuilds them from the ledger."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import sqlalchemy as sa

from gateway.usage.ledger_table import usage_ledger
from gateway.usage.pricing import usd_text
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.processes import run_gateway
from tests.support.replicas import forget_team_keys
from tests.support.upstream import Behaviour, MockUpstream

BUNDLE = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat:
    deployments: [{{provider: up, model: upstream-chat}}]
    price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}
teams:
  {team}:
    models: ["*"]
    max_tokens_default: 20
    budgets: [{{period: month, tokens: 1000000}}]
    per_user: {{rpm: 1000, budgets: [{budget}]}}
"""
# Each answer is 10 prompt + 5 completion tokens, 20,000 nano-USD (10 x 1 + 5 x 2 per
# Mtok); a request reserves its prompt and 20 output tokens first. Either budget lets a
# user through a few times, then refuses them.
WEEK_TOKENS = "{period: week, tokens: 100}"
MONTH_USD = "{period: month, usd: 0.0001}"
BUDGETS = {
    "week tokens": (WEEK_TOKENS, "week", "tokens", "week token budget", 15),
    "month usd": (MONTH_USD, "month", "usd", "month USD budget", 20_000),
}


@pytest.fixture(params=["in process", "redis"])
def limits_settings(request: pytest.FixtureRequest) -> dict[str, object]:
    if request.param == "in process":
        return {}
    return {"redis_url": request.getfixturevalue("redis_url")}


async def away_from_midnight() -> None:
    """The test's requests must fall in one UTC day (so in one week and one month)."""
    to_midnight = 86_400 - time.time() % 86_400
    if to_midnight < 60:
        await asyncio.sleep(to_midnight + 1)


async def client_of(gw: RunningGateway, team: str, subject: str) -> openai.AsyncOpenAI:
    client = openai.AsyncOpenAI(
        base_url=gw.base_url, api_key=await gw.token(team, subject=subject), max_retries=0
    )
    gw.clients.append(client)
    return client


async def ask(client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])


async def spend_until_refused(client: openai.AsyncOpenAI) -> tuple[int, openai.APIStatusError]:
    """(answers before the refusal, the refusal)."""
    for answered in range(20):
        try:
            await ask(client)
        except openai.RateLimitError as refused:
            return answered, refused
    raise AssertionError("the user's budget never refused a request")


async def usage_of(gw: RunningGateway, team: str, user: str | None) -> dict[str, Any]:
    admin = await gw.token(team, scopes=("gateway:admin",), subject="admin")
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{gw.origin}/admin/teams/{team}/usage",
            params={"user": user} if user else None,
            headers={"authorization": f"Bearer {admin}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return dict(await response.json())


def users_budget(view: dict[str, Any]) -> dict[str, Any]:
    (budget,) = [b for b in view["budgets"] if b["scope"] == "user"]
    return dict(budget)


async def settled(gw: RunningGateway, team: str, user: str, rows: int) -> dict[str, Any]:
    """The user's budget once nothing is reserved and the ledger holds `rows` rows."""
    for _ in range(100):
        budget = users_budget(await usage_of(gw, team, user))
        if budget["reserved"] in (0, usd_text(0)) and await ledger_rows(gw) >= rows:
            return budget
        await asyncio.sleep(0.05)
    raise AssertionError(f"still reserved or not in the ledger: {budget}")


async def ledger_rows(gw: RunningGateway) -> int:
    async with gw.services.engine.connect() as conn:
        counted = await conn.execute(sa.select(sa.func.count()).select_from(usage_ledger))
        return int(counted.scalar_one())


@pytest.mark.parametrize("which", list(BUDGETS))
async def test_a_user_past_their_budget_is_refused_and_another_user_goes_on(
    tmp_path: Path, limits_settings: dict[str, object], which: str
) -> None:
    """Alice spends her own weekly tokens (or monthly USD) and gets 429 insufficient_quota
    naming her per-user budget, with no retry; Bob, of the same team, is served. The usage
    view shows her budget used, remaining and when it resets; after a restart (Redis's
    keys lost too) it is rebuilt from the ledger, and she is still refused."""
    await away_from_midnight()
    budget, period, unit, name, per_request = BUDGETS[which]
    team = f"users-{uuid.uuid4().hex[:8]}"  # Redis keys are per team: a run of its own
    async with MockUpstream("up") as up:
        up.behave(Behaviour(prompt_tokens=10, completion_tokens=5))
        bundle = BUNDLE.format(base=up.base_url, team=team, budget=budget)
        async with running_gateway(tmp_path, bundle, **limits_settings) as gw:
            alice = await client_of(gw, team, "alice")
            answered, refused = await spend_until_refused(alice)
            assert answered >= 2
            assert (refused.status_code, refused.code) == (429, "insufficient_quota")
            assert refused.response.headers["x-should-retry"] == "false"
            assert "retry-after" not in refused.response.headers
            assert refused.response.headers["x-gateway-budget"] == f"user:{unit}:{period}"
            assert f"your per-user {name} in team '{team}'" in refused.message
            await ask(await client_of(gw, team, "bob"))  # his own budget: untouched

            shown = await settled(gw, team, "alice", answered + 1)
            used = answered * per_request
            expected_used: int | str = used if unit == "tokens" else usd_text(used)
            assert (shown["period"], shown["unit"], shown["used"]) == (period, unit, expected_used)
            assert shown["resets_at"] > shown["period_start"]
            team_view = await usage_of(gw, team, None)
            assert [(r["kind"], r["period"], r["unit"]) for r in team_view["per_user"][:1]] == [
                ("budget", period, unit)
            ]

        redis_url = limits_settings.get("redis_url")
        if isinstance(redis_url, str):
            assert await forget_team_keys(redis_url, team) > 0  # Redis lost them too
        async with running_gateway(tmp_path, bundle, **limits_settings) as gw:
            rebuilt = users_budget(await usage_of(gw, team, "alice"))
            assert rebuilt["used"] == expected_used
            with pytest.raises(openai.RateLimitError):
                await ask(await client_of(gw, team, "alice"))
            await ask(await client_of(gw, team, "bob"))
            code, view, text = await asyncio.to_thread(usage_cli, gw, team, "alice")
            assert code == 0 and "unknown" not in text, text  # the live counters, not the ledger's
            assert users_budget(view)["used"] == expected_used
            assert f"budget user {period:5} {unit:6} limit" in text


def usage_cli(gw: RunningGateway, team: str, user: str) -> tuple[int, dict[str, Any], str]:
    """`gateway usage TEAM --user U` as JSON and as text, beside the running gateway (its
    counters read from Redis, or asked of it)."""
    env = {
        "GATEWAY_DATABASE_URL": gw.settings.database_url,
        "GATEWAY_REDIS_URL": gw.settings.redis_url or "",
        "GATEWAY_ISSUER_URL": gw.settings.issuer_url,
    }
    args = ("usage", team, "--user", user, "--server", gw.origin)
    shown = run_gateway(*args, "--json", cwd=gw.settings.policy_dir.parent, env=env)
    if shown.returncode != 0:
        return shown.returncode, {}, shown.stderr
    text = run_gateway(*args, cwd=gw.settings.policy_dir.parent, env=env)
    return text.returncode, json.loads(shown.stdout), text.stdout + text.stderr
