"""A rolling restart under a burst, on PostgreSQL and Redis (issue 13 items 4 and 5):
one of two replicas gets SIGTERM while eight clients send. Its /readyz answers 503 from
the first request after the signal until it stops listening, the load balancer (the
test's fleet) takes it out, no client request fails for good, and after both exit every
answered request is in the ledger once.

The SQLite variants of "SIGTERM flushes the ledger during a burst and during a stream"
are tests/integration/test_ledger_process.py; the drain's 503s and the grace are
tests/integration/test_drain.py. This adds the replicas, PostgreSQL, Redis limits, and
readiness measured from the signal on.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import aiohttp

from tests.support.load import CHAT_ESTIMATE, ChatLoad, Fleet
from tests.support.replicas import (
    BUDGET_POLICY,
    empty_postgres,
    forget_team_keys,
    ledger_request_ids,
    replica_home,
    replica_token,
)
from tests.support.serving import ServeProcess, serve_process
from tests.support.upstream import Behaviour, MockUpstream

REQUESTS = 300


async def _readiness_until_gone(
    http: aiohttp.ClientSession, server: ServeProcess
) -> list[tuple[float, int]]:
    """(seconds from the first probe sent to this answer, status) of /readyz probes, the
    first sent at once, until the replica stops answering."""
    seen: list[tuple[float, int]] = []
    started = time.monotonic()
    while time.monotonic() - started < 60:
        try:
            async with http.get(f"{server.origin}/readyz") as response:
                seen.append((time.monotonic() - started, response.status))
        except aiohttp.ClientConnectionError:
            return seen
        await asyncio.sleep(0.02)
    raise AssertionError("the draining replica never stopped listening")


async def test_sigterm_to_one_of_two_replicas_during_a_burst(
    tmp_path: Path, postgres_url: str, redis_url: str, http
) -> None:
    team = f"rolling-{uuid.uuid4().hex[:8]}"
    await empty_postgres(postgres_url)
    (tmp_path / "spool").mkdir()  # a set GATEWAY_LEDGER_SPOOL_DIR must exist (a mounted volume)
    env = {
        "GATEWAY_DATABASE_URL": postgres_url,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_ACCESS_LOG": "off",
        "GATEWAY_LEDGER_SPOOL_DIR": str(tmp_path / "spool"),
    }
    try:
        async with MockUpstream("up") as up:
            up.behave(Behaviour(prompt_tokens=8, completion_tokens=100, delay_s=0.1))
            policy = BUDGET_POLICY.format(
                base=up.base_url, team=team, budget=10 * REQUESTS * CHAT_ESTIMATE
            )
            with ExitStack() as stack:
                leaving, staying = [
                    await asyncio.to_thread(
                        stack.enter_context,
                        serve_process(replica_home(tmp_path, name, policy), env),
                    )
                    for name in ("a", "b")
                ]
                token = await replica_token(postgres_url, leaving.port, team, "burst")
                fleet = Fleet([leaving.origin, staying.origin])
                load = ChatLoad(http, fleet, token, total=REQUESTS, concurrency=8)
                running = asyncio.create_task(load.run())
                await load.wait_answers(60)
                async with http.get(f"{leaving.origin}/readyz") as response:
                    assert response.status == 200  # ready until the signal
                leaving.process.send_signal(signal.SIGTERM)
                probes = await _readiness_until_gone(http, leaving)
                fleet.remove(leaving.origin)
                code = await asyncio.to_thread(leaving.process.wait, 60)
                assert code == 0, leaving.stderr()
                answers = await running
                staying.process.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(staying.process.wait, 60) == 0
    finally:
        await forget_team_keys(redis_url, team)

    # Not ready from the first probe after the signal (sent at once) to the last.
    assert probes and all(status == 503 for _, status in probes), probes
    assert probes[0][0] < 1.0, probes[0]  # the probe sent right after the signal
    # No request failed for good: the ones the leaving replica refused went to the other.
    assert [a.status for a in answers] == [200] * REQUESTS
    assert {a.origin for a in answers} == {leaving.origin, staying.origin}
    ledger = await ledger_request_ids(postgres_url)
    missing = [a.request_id for a in answers if ledger[a.request_id] != 1]
    assert missing == []
