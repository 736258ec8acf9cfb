"""Three replicas, one PostgreSQL, one Redis, and one replica `kill -9`ed mid-load
(issue 13 item 5, with issues 9 and 10): the other two keep serving, the team's budget
holds exactly, and every answered request is on the books.

What `kill -9` may lose, and what this test holds the gateway to:

- budget: nothing. The dead replica's reservations stay held in Redis until their
  lease ends (the route's timeout plus a minute), so no other replica can spend them
  meanwhile; its settles that had landed are counted.
- ledger: only rows neither committed nor spooled when the process died, i.e. requests
  answered within the writer's last batch interval (0.2 s, plus the batch being
  written). Rows it had spooled (its database was away) are on disk, fsynced; the next
  start on the same spool folder replays them.

The victim reaches PostgreSQL through a proxy the test cuts before the kill, so it has
spooled rows to leave behind; the shared database keeps serving the other two.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy.engine import make_url

from gateway.usage.spool import default_spool_dir
from tests.support.load import CHAT_ESTIMATE, ChatLoad, Fleet, refusal_codes, until
from tests.support.processes import run_gateway
from tests.support.replicas import (
    BUDGET_POLICY,
    empty_postgres,
    ledger_request_ids,
    ledger_tokens,
    replica_home,
    replica_token,
    spooled_lines,
)
from tests.support.serving import ServeProcess, serve_process
from tests.support.tcp_proxy import TcpProxy
from tests.support.upstream import Behaviour, MockUpstream

REQUESTS = 200
FITS = 100  # the budget holds about half the load
# Rows the victim recorded this long before the kill must be in the ledger: the batch
# interval (0.2 s) and one batch write, with room for a busy shared machine.
LOSS_WINDOW_S = 2.0


def _stop(server: ServeProcess) -> int:
    server.process.send_signal(signal.SIGTERM)
    return server.process.wait(60)


async def test_kill_9_of_one_of_three_replicas_mid_load(
    tmp_path: Path, postgres_url: str, redis_url: str, http
) -> None:
    team = f"replicas-{uuid.uuid4().hex[:8]}"  # a team of its own: its own Redis keys
    await empty_postgres(postgres_url)
    spool_root = tmp_path / "spool"
    spool_root.mkdir()  # a set GATEWAY_LEDGER_SPOOL_DIR must exist (a mounted volume)
    common = {
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_ACCESS_LOG": "off",
        "GATEWAY_LEDGER_SPOOL_DIR": str(spool_root),
    }
    direct = {**common, "GATEWAY_DATABASE_URL": postgres_url}
    parsed = make_url(postgres_url)
    async with MockUpstream("up") as up:
        up.behave(Behaviour(prompt_tokens=8, completion_tokens=100, delay_s=0.3))
        policy = BUDGET_POLICY.format(base=up.base_url, team=team, budget=FITS * CHAT_ESTIMATE)
        with (
            TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy,
            ExitStack() as stack,
        ):
            via_proxy = {
                **common,
                "GATEWAY_DATABASE_URL": parsed.set(port=proxy.port).render_as_string(
                    hide_password=False
                ),
            }
            envs = [direct, direct, via_proxy]
            replicas: list[ServeProcess] = []
            for i, env in enumerate(envs):
                home = replica_home(tmp_path, f"r{i}", policy)
                replicas.append(
                    await asyncio.to_thread(stack.enter_context, serve_process(home, env))
                )
            survivors, victim = replicas[:2], replicas[2]
            token = await replica_token(postgres_url, replicas[0].port, team, "loader")
            fleet = Fleet([r.origin for r in replicas])
            load = ChatLoad(http, fleet, token, total=REQUESTS, concurrency=6)
            running = asyncio.create_task(load.run())

            # Mid-load: the victim's database goes away (its rows go to its spool) ...
            await load.wait_answers(20)
            proxy.cut()
            victim_spool = default_spool_dir(via_proxy["GATEWAY_DATABASE_URL"], str(spool_root))
            first = min(a.at for a in load.answers if a.origin == victim.origin)
            await until(
                lambda: (
                    spooled_lines(victim_spool) >= 3
                    and time.monotonic() - first > LOSS_WINDOW_S + 0.2
                )
            )
            # ... then it dies without a chance to flush anything.
            victim.process.kill()
            killed_at = time.monotonic()
            fleet.remove(victim.origin)
            await asyncio.to_thread(victim.process.wait, 30)
            answers = await running

            after_kill = [a for a in answers if a.at > killed_at]
            assert {a.origin for a in after_kill} == {s.origin for s in survivors}
            assert all(s.process.poll() is None for s in survivors)

            # The budget: every refusal is insufficient_quota, and the usage Redis counts
            # (settled plus still held by the dead replica) covers every 200 and stays
            # within the budget (true usage equals the estimate here: no error to allow).
            ok = [a for a in answers if a.status == 200]
            assert refusal_codes(answers) <= {(429, "insufficient_quota")}, refusal_codes(answers)
            assert 0 < len(ok) <= FITS
            assert all(a.tokens == CHAT_ESTIMATE for a in ok)
            await asyncio.sleep(0.5)  # the survivors' last settles land in the background
            shown = await asyncio.to_thread(
                run_gateway, "usage", team, "--json", cwd=tmp_path / "r0", env=direct
            )
            assert shown.returncode == 0, shown.stderr
            budget = json.loads(shown.stdout)["budgets"][0]
            assert budget["used"] + budget["reserved"] <= FITS * CHAT_ESTIMATE
            assert len(ok) * CHAT_ESTIMATE <= budget["used"] + budget["reserved"]
            # Only what the victim had in flight can still be held.
            assert budget["reserved"] <= load.concurrency * CHAT_ESTIMATE

            # The books: the survivors flush on SIGTERM and exit 0 ...
            for server in survivors:
                assert await asyncio.to_thread(_stop, server) == 0, server.stderr()
            before_replay = await ledger_request_ids(postgres_url)
            assert spooled_lines(victim_spool) >= 3
            # ... and the victim's replacement, on the same database URL and spool
            # folder, replays what the victim had spooled.
            proxy.restore()
            home = tmp_path / "r2"
            replacement = await asyncio.to_thread(
                stack.enter_context, serve_process(home, via_proxy)
            )
            await until(lambda: spooled_lines(victim_spool) == 0)
            assert await asyncio.to_thread(_stop, replacement) == 0, replacement.stderr()
            assert "replayed a ledger spool left by an earlier process" in replacement.stderr()

    ledger = await ledger_request_ids(postgres_url)
    assert sum(ledger.values()) > sum(before_replay.values())  # the spool added rows
    assert all(count == 1 for count in ledger.values())
    missing = [a for a in answers if ledger[a.request_id] == 0]
    # Lost: only the victim's, and only those answered just before it died.
    assert all(a.origin == victim.origin for a in missing), missing
    assert all(a.at >= killed_at - LOSS_WINDOW_S for a in missing), missing
    victim_before_window = [
        a for a in answers if a.origin == victim.origin and a.at < killed_at - LOSS_WINDOW_S
    ]
    assert victim_before_window  # the bound was put to the test
    # Settled usage on the books never passes the budget either.
    assert await ledger_tokens(postgres_url, team) <= FITS * CHAT_ESTIMATE
