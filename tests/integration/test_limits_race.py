"""The race: 200 concurrent requests for one team whose budget fits 50, on three gateway
processes sharing Redis, and on one process in-process. Settled usage never passes the
budget by more than one request's estimate error; every refusal is insufficient_quota."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import ExitStack
from pathlib import Path

import aiohttp

from tests.support.gateway import running_gateway
from tests.support.processes import run_gateway
from tests.support.replicas import BUDGET_POLICY, replica_token
from tests.support.serving import serve_process
from tests.support.upstream import Behaviour, MockUpstream

ESTIMATE = 8 + 100  # "hi" as one chat message (3 + 3 + role + text) + max_tokens
FITS = 50


async def _fire(
    http: aiohttp.ClientSession, origins: list[str], token: str
) -> list[tuple[int, dict]]:  # type: ignore[type-arg]
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}

    async def one(i: int) -> tuple[int, dict]:  # type: ignore[type-arg]
        async with http.post(
            f"{origins[i % len(origins)]}/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {token}"},
        ) as response:
            return response.status, await response.json()

    return await asyncio.gather(*(one(i) for i in range(200)))


def _check(results: list[tuple[int, dict]], used: int) -> None:  # type: ignore[type-arg]
    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] != 200]
    assert all(
        status == 429 and body["error"]["code"] == "insufficient_quota" for status, body in refused
    ), {status for status, _ in refused}
    assert 0 < len(ok) <= FITS
    assert used <= FITS * ESTIMATE  # true usage == estimate here: no error to allow for
    assert used == len(ok) * ESTIMATE


async def test_three_processes_on_redis_never_overspend(
    tmp_path: Path, redis_url: str, http
) -> None:
    team = f"race-{uuid.uuid4().hex[:8]}"
    database = f"sqlite+aiosqlite:///{tmp_path}/shared.db"
    env = {
        "GATEWAY_DATABASE_URL": database,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_ACCESS_LOG": "off",
    }
    async with MockUpstream("up") as up:
        up.behave(Behaviour(prompt_tokens=8, completion_tokens=100, delay_s=0.05))
        with ExitStack() as stack:
            servers = []
            for i in range(3):
                home = tmp_path / f"g{i}"
                (home / "policies").mkdir(parents=True)
                (home / "policies" / "bundle.yaml").write_text(
                    BUDGET_POLICY.format(base=up.base_url, team=team, budget=FITS * ESTIMATE)
                )
                servers.append(
                    await asyncio.to_thread(stack.enter_context, serve_process(home, env))
                )
            token = await replica_token(database, servers[0].port, team, "racer")
            results = await _fire(http, [s.origin for s in servers], token)
            await asyncio.sleep(0.5)  # settles land in the background
            shown = await asyncio.to_thread(
                run_gateway, "usage", team, "--json", cwd=tmp_path / "g0", env=env
            )
            assert shown.returncode == 0, shown.stderr
            budget = json.loads(shown.stdout)["budgets"][0]
            assert budget["reserved"] == 0
            _check(results, budget["used"])


async def test_one_process_in_process_never_overspends(tmp_path: Path, http) -> None:
    async with MockUpstream("up") as up:
        up.behave(Behaviour(prompt_tokens=8, completion_tokens=100, delay_s=0.05))
        policy = BUDGET_POLICY.format(base=up.base_url, team="solo", budget=FITS * ESTIMATE)
        async with running_gateway(tmp_path, policy) as gw:
            results = await _fire(http, [gw.origin], await gw.token("solo"))
            from gateway.limits.view import usage_view

            policy_now = gw.services.policy.current()
            view = await usage_view(gw.services.limits, policy_now, policy_now.teams["solo"], None)
            assert view["budgets"][0]["reserved"] == 0
            _check(results, view["budgets"][0]["used"])
