"""A request still running when uvicorn's own shutdown deadline cancels it: a second
SIGTERM during the drain skips the drain's grace, and uvicorn gives the requests under
way its short deadline (2 s), then cancels them. Such a request ends as the drain's cut
does: a 503 server_shutting_down (a stream: its error event), one ledger row saying 503
cancelled, charged what its upstream was sent or generated, and its limits settled.

A real `gateway serve` against a slow mock upstream, limits in a Redis of the test's own
(read afterwards by an in-process gateway on the same database and Redis).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import orjson
import pytest

from tests.support.gateway import running_gateway
from tests.support.processes import run_gateway
from tests.support.serving import serve_process
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  slow:
    deployments: [{{provider: up, model: upstream-model}}]
    price: {{input_per_mtok: 0.15, output_per_mtok: 0.60}}
teams:
  demo:
    models: ["*"]
    max_tokens_default: 100
    budgets: [{{period: day, tokens: 100000}}]
    limits: {{concurrency: 5}}
"""
CHAT = {"model": "slow", "messages": [{"role": "user", "content": "tell me a long story " * 10}]}


@pytest.fixture
def own_redis() -> Iterator[str]:
    """A Redis of this test's own (the limits' keys read back after the server stopped)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = random.randint(6390, 6499)
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def _token(tmp_path) -> str:
    done = run_gateway("token", "--team", "demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


async def _ask(http: httpx.AsyncClient, token: str, stream: bool) -> tuple[int, list[str]]:
    """The answer's status and its non-empty lines (a stream's, or the body)."""
    lines: list[str] = []
    async with http.stream(
        "POST",
        "/v1/chat/completions",
        json={**CHAT, "stream": stream},
        headers={"Authorization": f"Bearer {token}"},
    ) as reply:
        async for line in reply.aiter_lines():
            if line:
                lines.append(line)
        return reply.status_code, lines


@pytest.mark.parametrize("stream", [False, True], ids=["whole answer", "stream"])
async def test_a_request_cut_by_uvicorns_deadline_is_answered_charged_and_recorded(
    tmp_path, own_redis, stream
):
    """SIGTERM (a 30 s grace), then a second SIGTERM: the request is cut ~2 s later with
    a 503 server_shutting_down (a stream: its error event, no [DONE]); its one row says
    503 cancelled, charged the prompt (a stream: and what was generated); afterwards
    the team's budget has it as used with nothing reserved, and no request in flight."""
    async with MockUpstream(name="up") as up:
        if stream:
            up.behave(Behaviour(chunks=200, chunk_delay_s=0.1, content="word " * 200))
        else:
            up.behave(Behaviour(delay_s=30))
        (tmp_path / "policies").mkdir()
        (tmp_path / "policies" / "bundle.yaml").write_text(POLICY.format(base=up.base_url))
        env = {"GATEWAY_DRAIN_GRACE_S": "30", "GATEWAY_REDIS_URL": own_redis}
        with serve_process(tmp_path, env) as server:
            token = _token(tmp_path)
            async with httpx.AsyncClient(base_url=server.origin, timeout=30) as http:
                asked = asyncio.create_task(_ask(http, token, stream))
                await up.wait_for_requests(1)
                await asyncio.sleep(0.3)
                server.process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)  # the drain has begun (a tick is 0.1 s)
                server.process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                status, lines = await asyncio.wait_for(asked, 20)
            ended_after_s = time.monotonic() - signalled
            code = await asyncio.to_thread(server.process.wait, 30)
        log = server.stderr()
        assert ended_after_s < 5, ended_after_s  # uvicorn's 2 s, not the drain's 30 s
        if stream:
            assert status == 200
            assert "data: [DONE]" not in lines
            error = orjson.loads(lines[-1][5:])["error"]
        else:
            assert status == 503, lines
            error = orjson.loads(lines[0])["error"]
        assert (error["type"], error["code"]) == ("api_error", "server_shutting_down")
        assert "Exception in ASGI application" not in log, log
        assert code == 128 + signal.SIGTERM, log
        with sqlite3.connect(tmp_path / "gateway.db") as db:
            db.row_factory = sqlite3.Row
            (row,) = [dict(r) for r in db.execute("SELECT * FROM usage_ledger")]
        assert (row["status"], row["outcome"], row["error_code"]) == (
            503,
            "cancelled",
            "server_shutting_down",
        )
        assert row["input_tokens"] > 0 and row["tokens_estimated"] == 1
        if stream:
            assert row["output_tokens"] > 0
        else:
            assert row["output_tokens"] == 0
        assert row["cost_nanousd"] > 0
        # The limits, as the next replica sees them in the shared Redis.
        async with running_gateway(
            tmp_path, POLICY.format(base=up.base_url), redis_url=own_redis
        ) as gw:
            view = await _usage(gw.origin, await gw.token("demo", scopes=("gateway:admin",)))
    (budget,) = view["budgets"]
    assert budget["used"] == row["input_tokens"] + row["output_tokens"], budget
    assert budget["reserved"] == 0, budget
    (concurrency,) = [lim for lim in view["limits"] if lim["kind"] == "concurrency"]
    assert concurrency["used"] == 0, concurrency


async def _usage(origin: str, admin_token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=origin) as http:
        reply = await http.get(
            "/admin/teams/demo/usage", headers={"Authorization": f"Bearer {admin_token}"}
        )
    assert reply.status_code == 200, reply.text
    return dict(reply.json())
