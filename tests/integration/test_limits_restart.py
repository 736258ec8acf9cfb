"""The budget race through a restart (issue 9): one `gateway serve` process takes a load
for a team whose budget fits about half of it, is stopped with SIGTERM in the middle and
started again on the same database. On Redis the team's keys are also deleted while it is
down (Redis lost them). The second process rebuilds the day's usage from the ledger, so
the whole load is still held to the one budget.

Through the restart a client meets 503 server_shutting_down (draining) and refused
connections (down); it sends those again, as a load balancer would. Every answer it keeps
is a 200 or a 429 insufficient_quota.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.load import CHAT_ESTIMATE, ChatLoad, Fleet, refusal_codes
from tests.support.replicas import (
    BUDGET_POLICY,
    forget_team_keys,
    ledger_request_ids,
    ledger_tokens,
    replica_home,
    replica_token,
)
from tests.support.serving import ServeProcess, serve_process
from tests.support.upstream import Behaviour, MockUpstream

REQUESTS = 200
FITS = 100


def _stop(server: ServeProcess) -> int:
    server.process.send_signal(signal.SIGTERM)
    return server.process.wait(60)


@pytest.mark.parametrize("backend", ["redis", "in-process"])
async def test_a_restart_mid_race_rebuilds_the_budget_from_the_ledger(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, http
) -> None:
    team = f"restart-{uuid.uuid4().hex[:8]}"
    database = f"sqlite+aiosqlite:///{tmp_path}/gateway.db"
    env = {"GATEWAY_DATABASE_URL": database, "GATEWAY_ACCESS_LOG": "off"}
    redis_url: str | None = None
    if backend == "redis":
        redis_url = request.getfixturevalue("redis_url")
        env["GATEWAY_REDIS_URL"] = redis_url
    async with MockUpstream("up") as up:
        up.behave(Behaviour(prompt_tokens=8, completion_tokens=100, delay_s=0.1))
        policy = BUDGET_POLICY.format(base=up.base_url, team=team, budget=FITS * CHAT_ESTIMATE)
        home = replica_home(tmp_path, "g", policy)
        with ExitStack() as stack:
            first = await asyncio.to_thread(stack.enter_context, serve_process(home, env))
            token = await replica_token(database, first.port, team, "racer")
            fleet = Fleet([first.origin])
            load = ChatLoad(http, fleet, token, total=REQUESTS, concurrency=8)
            running = asyncio.create_task(load.run())
            await load.wait_answers(30)
            # SIGTERM mid-load: the requests under way finish and are settled, the ledger
            # is flushed, the process exits 0; new requests meanwhile are sent again.
            assert await asyncio.to_thread(_stop, first) == 0, first.stderr()
            before = list(load.answers)
            if redis_url is not None:
                assert await forget_team_keys(redis_url, team) > 0
            second = await asyncio.to_thread(stack.enter_context, serve_process(home, env))
            fleet.add(second.origin)
            fleet.remove(first.origin)
            answers = await running
            assert await asyncio.to_thread(_stop, second) == 0, second.stderr()

    ok = [a for a in answers if a.status == 200]
    after = [a for a in answers if a.origin == second.origin]
    assert refusal_codes(answers) <= {(429, "insufficient_quota")}, refusal_codes(answers)
    assert all(a.tokens == CHAT_ESTIMATE for a in ok)
    assert any(a.status == 200 for a in after)  # the second process spent the rest ...
    assert any(a.status == 429 for a in after)  # ... and refused once it was gone
    assert sum(a.status == 200 for a in before) < len(ok) <= FITS
    # Settled usage on the books: every 200 once, never over the budget (true usage
    # equals the estimate here, so there is no estimate error to allow for).
    ledger = await ledger_request_ids(database)
    assert all(ledger[a.request_id] == 1 for a in answers)
    assert await ledger_tokens(database, team) == len(ok) * CHAT_ESTIMATE <= FITS * CHAT_ESTIMATE
