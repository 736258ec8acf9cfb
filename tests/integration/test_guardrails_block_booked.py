"""A stream an output rule blocks is booked as that block (400 content_policy_violation),
however fast its client hangs up: the official SDK raises at the gateway's error event
and closes the connection at once, often before the gateway's relay is over. That
client left because of the block, as one reading on to the end sees it (black-box probe:
6 of 10 such streams were booked 499 client_disconnected)."""

from __future__ import annotations

import asyncio
import sqlite3

import openai
import pytest

from tests.support.gateway import running_gateway
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat:
    deployments: [{{provider: up, model: upstream-chat}}]
teams:
  demo: {{models: ["*"], guardrails: [strict]}}
guardrails:
  strict:
    output:
      - {{keywords: [SECRETCODE], name: no_code, action: block}}
"""
STREAMS = 12
BODY = b'{"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'


def booked(tmp_path) -> list[tuple[int, str, str | None]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        return db.execute("SELECT status, outcome, error_code FROM usage_ledger").fetchall()


async def test_a_blocked_stream_the_sdk_hangs_up_on_is_booked_as_the_block(tmp_path):
    async with MockUpstream("up") as up:
        # No usage from the upstream: the gateway counts what it generated (on a thread,
        # for this much text), and the client hangs up meanwhile.
        text = "words to count " * 20_000 + "then SECRETCODE and more"
        up.behave(Behaviour("stream_no_usage", content=text, chunks=8, chunk_delay_s=0.05))
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            client = await gw.openai()
            for _ in range(STREAMS):
                with pytest.raises(openai.APIError) as caught:
                    stream = await client.chat.completions.create(
                        model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
                    )
                    async for _chunk in stream:
                        pass
                assert "no_code" in str(caught.value)
            token = await gw.token()
            port = int(gw.origin.rsplit(":", 1)[1])
            for _ in range(STREAMS):  # one that hangs up the moment the error event arrives
                await read_until_the_error_then_hang_up(port, token)
            for _ in range(100):  # the ledger writer's batches land within ~0.2 s
                if len(booked(tmp_path)) == 2 * STREAMS:
                    break
                await asyncio.sleep(0.05)
    assert booked(tmp_path) == [(400, "refused", "content_policy_violation")] * 2 * STREAMS


async def read_until_the_error_then_hang_up(port: int, token: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        + f"authorization: Bearer {token}\r\ncontent-length: {len(BODY)}\r\n\r\n".encode()
        + BODY
    )
    seen = b""
    while b"content_policy_violation" not in seen:
        data = await reader.read(65536)
        assert data, "the stream ended before its error event"
        seen += data
    writer.close()
