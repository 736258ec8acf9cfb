"""A client too slow to read its stream is cut at the request's deadline: it cannot
hold the stream, its concurrency slot and its budget reservation open past their lease
(a black-box probe ran two streams at once under `concurrency: 1` that way)."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlsplit

from gateway.limits.plan import Estimate, build_plan
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat:
    deployments: [{{provider: up, model: upstream-chat}}]
routing: {{timeout_s: 2, attempt_timeout_s: 2, retries: 0}}
teams:
  slow:
    models: ["*"]
    budgets: [{{period: day, tokens: 100000000}}]
    limits: {{concurrency: 1}}
"""
# Megabytes of stream, produced at once: far more than the socket buffers hold.
BIG = Behaviour(content="word " * 1_500_000, chunks=3000, completion_tokens=1_500_000)


def open_slow_reader(origin: str, token: str) -> socket.socket:
    """A raw client with a tiny receive buffer that sends a stream request, reads the
    status line and then nothing more."""
    url = urlsplit(origin)
    body = json.dumps(
        {
            "model": "chat",
            "stream": True,
            "max_tokens": 1000,
            "messages": [{"role": "user", "content": "go"}],
        }
    ).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((url.hostname, url.port))
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {url.netloc}\r\n"
        f"authorization: Bearer {token}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body)
    assert sock.recv(12).startswith(b"HTTP/1.1 200")
    return sock


async def in_flight(gw: RunningGateway) -> int:
    rules = gw.services.policy.current().teams["slow"]
    plan = build_plan(rules, "tester", Estimate(0, 0), gw.services.limits.clock())
    snapshot = await gw.services.limits.snapshot(plan)
    assert snapshot.budgets[0] is not None
    return snapshot.concurrency[0] + snapshot.budgets[0].reserved


async def test_a_client_too_slow_to_read_is_cut_at_the_deadline_and_frees_its_limits(
    tmp_path: Path,
) -> None:
    async with MockUpstream("up") as up:
        up.behave(BIG)
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            reader = await asyncio.to_thread(open_slow_reader, gw.origin, await gw.token("slow"))
            try:
                started = time.monotonic()
                assert await in_flight(gw) > 0  # the slot and the reservation are held
                while await in_flight(gw) > 0:
                    # timeout_s 2 + the 1 s grace; the lease would have been 62 s
                    assert time.monotonic() - started < 15, "the stream outlived its deadline"
                    await asyncio.sleep(0.2)
                # the slot is free: the next request is admitted (and not a 429)
                client = await gw.openai("slow")
                up.behave(Behaviour())
                await client.chat.completions.create(
                    model="chat", messages=[{"role": "user", "content": "hi"}]
                )
            finally:
                reader.close()
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        rows = db.execute(
            "SELECT status, outcome, error_code, output_tokens FROM usage_ledger"
        ).fetchall()
    (cut,) = [row for row in rows if row[0] != 200]
    assert cut[:3] == (408, "client_disconnected", "client_too_slow")
    assert 0 < cut[3] < 1_500_000  # charged what went out (counted here: no usage came)
