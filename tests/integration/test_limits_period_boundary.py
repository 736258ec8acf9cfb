"""A budget period ends, end to end (issue 9): yesterday's spend does not count today.

A served gateway takes its limits clock from `Services.limits.clock` (epoch ms, read
on every reserve, settle and usage view; gateway/limits/service.py). `gateway serve`
has no setting for it, so this test runs the real app in-process (uvicorn on a loopback
port, real HTTP) and moves that clock across midnight of the last day of a month. The
ledger holds spend from earlier that day, written by "an earlier process": the counters
are rebuilt from it for the day it belongs to, and not for the next one. Both backends.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from gateway.db import create_engine
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.ledger_rows import insert_rows, ledger_row
from tests.support.load import CHAT, CHAT_ESTIMATE
from tests.support.replicas import forget_team_keys
from tests.support.upstream import Behaviour, MockUpstream

E = CHAT_ESTIMATE
POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat: {{deployments: [{{provider: up, model: upstream-chat}}]}}
teams:
  {team}:
    models: ["*"]
    budgets: [{{period: day, tokens: {day}}}, {{period: month, tokens: {month}}}]
"""


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


LAST_DAY = "2031-03-31"  # in the future: Redis keeps a counter until its period ends
BEFORE_MIDNIGHT = ms(f"{LAST_DAY}T23:59:59.999")
MIDNIGHT = ms("2031-04-01T00:00:00")


async def _chat(http: aiohttp.ClientSession, gw: RunningGateway, token: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with http.post(
        f"{gw.origin}/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {token}"},
    ) as response:
        body = await response.json()
        if response.status == 429:
            body["reset"] = response.headers["x-gateway-budget-reset"]
        return response.status, body


async def _usage(http: aiohttp.ClientSession, gw: RunningGateway, team: str) -> dict[str, dict]:  # type: ignore[type-arg]
    admin = await gw.token(team, scopes=("gateway:admin",))
    async with http.get(
        f"{gw.origin}/admin/teams/{team}/usage", headers={"authorization": f"Bearer {admin}"}
    ) as response:
        assert response.status == 200, await response.text()
        view = await response.json()
    return {b["period"]: b for b in view["budgets"]}


@pytest.mark.parametrize("backend", ["in-process", "redis"])
async def test_spend_of_the_day_before_does_not_count_after_midnight(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, http
) -> None:
    team = f"tick-{uuid.uuid4().hex[:8]}"
    settings: dict[str, object] = {}
    if backend == "redis":
        settings["redis_url"] = request.getfixturevalue("redis_url")
    try:
        await _cross_midnight(team, tmp_path, settings, http)
    finally:
        if backend == "redis":  # its counters would live until 2031
            await forget_team_keys(str(settings["redis_url"]), team)


async def _cross_midnight(
    team: str, tmp_path: Path, settings: dict[str, object], http: aiohttp.ClientSession
) -> None:
    async with MockUpstream("up") as up:
        up.behave(Behaviour(prompt_tokens=8, completion_tokens=100))
        policy = POLICY.format(base=up.base_url, team=team, day=3 * E, month=100 * E)
        async with running_gateway(tmp_path, policy, **settings) as gw:
            # Spent earlier on the last day of March, by a process that is gone.
            engine = create_engine(gw.settings.database_url)
            try:
                spent = ledger_row(team=team, at_ms=ms(f"{LAST_DAY}T23:00:00"), input_tokens=2 * E)
                await insert_rows(engine, [spent])
            finally:
                await engine.dispose()
            token = await gw.token(team)

            gw.services.limits.clock = lambda: BEFORE_MIDNIGHT
            assert (await _chat(http, gw, token))[0] == 200  # 2E + E fits in 3E
            status, body = await _chat(http, gw, token)
            assert (status, body["error"]["code"]) == (429, "insufficient_quota")
            assert "day token budget" in body["error"]["message"]
            assert body["reset"] == "2031-04-01T00:00:00Z"
            usage = await _usage(http, gw, team)
            assert (usage["day"]["used"], usage["month"]["used"]) == (3 * E, 3 * E)

            gw.services.limits.clock = lambda: MIDNIGHT  # a new day, and a new month
            answers = [await _chat(http, gw, token) for _ in range(4)]
            assert [status for status, _ in answers] == [200, 200, 200, 429]
            assert answers[-1][1]["reset"] == "2031-04-02T00:00:00Z"
            usage = await _usage(http, gw, team)
            assert (usage["day"]["used"], usage["day"]["reserved"]) == (3 * E, 0)
            assert usage["day"]["period_start"] == "2031-04-01T00:00:00.000Z"
            assert (usage["month"]["used"], usage["month"]["period_start"]) == (
                3 * E,
                "2031-04-01T00:00:00.000Z",
            )
