"""A Redis that accepts connections and closes them at once (at its maxclients, saying
so; a proxy whose backend is down does the same) is a Redis outage like any other: the
probe's scenario on a real `gateway serve` (uvloop) and a real redis-server. During it,
503 `limits_unavailable` with `retry-after: 1` (closed) or served (open); once Redis
accepts again, served; the settles deferred meanwhile reach the counters (the usage view
says what the ledger says, nothing left reserved). Before the fix: every limited request
500 until restart (the limits client kept a closed connection), settles lost."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from gateway.limits.redis_backend import RedisBackend
from gateway.limits.resp import RespConnection
from tests.support.closing_redis import Doorman
from tests.support.processes import run_gateway
from tests.support.redis_server import free_port, start_redis
from tests.support.replicas import ledger_tokens, replica_home, replica_token
from tests.support.serving import serve_process
from tests.support.upstream import Behaviour, MockUpstream

needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server"
)
POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat: {{deployments: [{{provider: up, model: upstream-chat}}]}}
limits: {{on_backend_error: {mode}}}
teams:
  {team}:
    models: ["chat"]
    max_tokens_default: 50
    budgets: [{{period: month, tokens: 10000000}}]
"""
BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
PER_REQUEST = 10 + 5  # the upstream's usage


class FullRedis:
    """Every slot of the Redis on `port` held (by subscribers the gateway's CLIENT KILL
    spares), its maxclients at what is connected, every normal client killed: each new
    connection is told "max number of clients reached" and closed."""

    def __init__(self, port: int) -> None:
        self._admin = redis.Redis(port=port)
        held = int(self._admin.info("clients")["connected_clients"])
        self._holders = []
        for i in range(held):
            holder = socket.create_connection(("127.0.0.1", port))
            holder.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\nhold%d\r\n" % (len(str(i)) + 4, i))
            holder.recv(100)
            self._holders.append(holder)
        self._admin.config_set("maxclients", held)
        self._admin.client_kill_filter(_type="normal")  # skips the admin's own

    def free(self) -> None:
        self._admin.config_set("maxclients", 10000)
        for holder in self._holders:
            holder.close()
        self._admin.close()


async def _ask(http: aiohttp.ClientSession, origin: str, token: str) -> tuple[int, str, str]:
    """Status, error code (or ""), retry-after (or "")."""
    async with http.post(
        f"{origin}/v1/chat/completions", json=BODY, headers={"authorization": f"Bearer {token}"}
    ) as response:
        body = await response.json()
        code = body["error"]["code"] if response.status != 200 else ""
        return response.status, code, response.headers.get("retry-after", "")


async def _asked(http: aiohttp.ClientSession, origin: str, token: str, n: int) -> list[Any]:
    gate = asyncio.Semaphore(10)

    async def one() -> tuple[int, str, str]:
        async with gate:
            return await _ask(http, origin, token)

    return list(await asyncio.gather(*(one() for _ in range(n))))


@needs_redis_server
@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_a_redis_that_closes_every_connection_is_an_outage_and_its_end_is_served(
    tmp_path: Path, http: aiohttp.ClientSession, mode: str
) -> None:
    port = free_port()
    (tmp_path / "redis").mkdir()
    server = start_redis(port, str(tmp_path / "redis"))
    team = f"mc-{uuid.uuid4().hex[:8]}"
    database = f"sqlite+aiosqlite:///{tmp_path}/gateway.db"
    env = {
        "GATEWAY_DATABASE_URL": database,
        "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "GATEWAY_ACCESS_LOG": "off",
    }
    try:
        async with MockUpstream("up") as up:
            up.behave(Behaviour(prompt_tokens=10, completion_tokens=5))
            home = replica_home(
                tmp_path, "g", POLICY.format(base=up.base_url, team=team, mode=mode)
            )
            with ExitStack() as stack:
                gw = await asyncio.to_thread(stack.enter_context, serve_process(home, env))
                token = await replica_token(database, gw.port, team, "u")
                assert await _asked(http, gw.origin, token, 2) == [(200, "", "")] * 2

                # Reserved before the outage, answered during it: their settles are deferred.
                up.behave(Behaviour(prompt_tokens=10, completion_tokens=5, delay_s=1.0))
                in_flight = asyncio.ensure_future(_asked(http, gw.origin, token, 5))
                await up.wait_for_requests(2 + 5)
                full = FullRedis(port)
                up.behave(Behaviour(prompt_tokens=10, completion_tokens=5))
                try:
                    assert await in_flight == [(200, "", "")] * 5
                    during = await _asked(http, gw.origin, token, 30)
                    async with http.get(f"{gw.origin}/readyz") as ready:
                        readiness = ready.status, (await ready.json())["checks"]["redis"]
                finally:
                    full.free()
                if mode == "closed":
                    assert set(during) == {(503, "limits_unavailable", "1")}
                    assert readiness[0] == 503
                else:
                    assert set(during) == {(200, "", "")}
                    assert readiness[0] == 200
                assert readiness[1].startswith("error: Redis unreachable"), readiness

                # Redis accepts again: served at once (no reconnect is waited for).
                assert await _asked(http, gw.origin, token, 20) == [(200, "", "")] * 20
                async with http.get(f"{gw.origin}/readyz") as ready:
                    assert ready.status == 200, await ready.text()

                served = 2 + 5 + 20 + (30 if mode == "open" else 0)
                deadline = time.monotonic() + 15
                while True:  # the ledger writer lands rows about a second after a request
                    shown = await asyncio.to_thread(
                        run_gateway, "usage", team, "--json", cwd=home, env=env
                    )
                    assert shown.returncode == 0, shown.stderr
                    budget = json.loads(shown.stdout)["budgets"][0]
                    truth = await ledger_tokens(database, team)
                    seen = (budget["used"], budget["reserved"], truth)
                    if seen == (served * PER_REQUEST, 0, served * PER_REQUEST):
                        break
                    assert time.monotonic() < deadline, seen
                    await asyncio.sleep(0.2)
                log = gw.stderr()
                assert "limits settles deferred" in log  # the in-flight five's, during it
                assert "internal_error" not in log and "RuntimeError" not in log
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(10)


async def test_readiness_is_the_limits_connection_s_too(redis_url: str) -> None:
    """redis-py's ping answered, the connection every reserve goes by refused (here: a
    server at its maxclients): /readyz's Redis check is not ok. Before, it said ok while
    every reserve failed."""
    doorman = Doorman()
    backend = RedisBackend.from_url(redis_url)
    fast = RespConnection("127.0.0.1", doorman.port, timeout_s=0.5)
    stuck = RedisBackend(backend._redis, fast)
    try:
        assert await backend.health() == "ok"
        health = await stuck.health()
        assert health.startswith("error: Redis "), health  # refused, or unreachable
        doorman.full = False
        assert await stuck.health() == "ok"
    finally:
        await fast.close()
        await backend.close()
        doorman.close()
