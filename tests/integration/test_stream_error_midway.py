"""An upstream error event in the middle of a stream, with more events after it (black-box
probe of the wire): the SDK raises at the error event, so the client's stream ends there,
the upstream is cut, and the records say the request failed (502 upstream_unavailable),
whatever the upstream sent next. A Responses `error` or `response.failed` likewise."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator

import httpx2 as httpx
import openai
import orjson
import pytest
from aiohttp import web

from gateway.sse import json_of
from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  m:
    deployments: [{{provider: up, model: upstream-model}}]
teams:
  demo: {{models: ["*"]}}
"""
FAILED = (502, "upstream_error", "upstream_unavailable")


def chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "upstream-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


CHAT_ERROR = (
    b'data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}}\n\n'
)
# The same event over two `data:` lines, which the SSE spec (and the SDK) joins with a
# newline: the SDK raises at it; it was read as its first line only (round-2 probe).
CHAT_ERROR_LINES = (
    b'data: {"error":\ndata: {"message":"boom","type":"server_error","param":null,"code":null}}\n\n'
)
USAGE = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
    b'"model":"upstream-model","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,'
    b'"total_tokens":10}}\n\n'
)
DONE = b"data: [DONE]\n\n"
RESPONSES_START = (
    b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
    b'"response":{"id":"resp_1","object":"response","status":"in_progress","output":[],'
    b'"error":null,"incomplete_details":null}}\n\n'
)


def delta(number: int, text: str) -> bytes:
    return (
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
        b'"sequence_number":%d,"delta":"%s"}\n\n' % (number, text.encode())
    )


RESPONSES_ERROR = (
    b'event: error\ndata: {"type":"error","code":"server_error","message":"boom",'
    b'"param":null,"sequence_number":2}\n\n'
)
RESPONSES_FAILED = (
    b'event: response.failed\ndata: {"type":"response.failed","sequence_number":2,'
    b'"response":{"id":"resp_1","object":"response","status":"failed","output":[],'
    b'"error":{"code":"server_error","message":"boom"},"incomplete_details":null}}\n\n'
)
RESPONSES_COMPLETED = (
    b'event: response.completed\ndata: {"type":"response.completed","sequence_number":9,'
    b'"response":{"id":"resp_1","object":"response","status":"completed","output":[],'
    b'"error":null,"incomplete_details":null,"usage":{"input_tokens":5,"output_tokens":3,'
    b'"total_tokens":8}}}\n\n'
)

CHAT_AFTER = [chunk(" more"), chunk(None, "stop"), USAGE, DONE]
# script: (its writes, the error event the client's stream must end on)
SCRIPTS = {
    "chat_apart": ([chunk("Hello"), CHAT_ERROR, *CHAT_AFTER], CHAT_ERROR),
    "chat_one_read": ([chunk("Hello") + CHAT_ERROR + b"".join(CHAT_AFTER)], CHAT_ERROR),
    "chat_lines": ([chunk("Hello"), CHAT_ERROR_LINES, *CHAT_AFTER], CHAT_ERROR_LINES),
    "responses_error": (
        [RESPONSES_START, delta(1, "Hel"), RESPONSES_ERROR, delta(3, "lo"), RESPONSES_COMPLETED],
        RESPONSES_ERROR,
    ),
    "responses_failed": (
        [RESPONSES_START, delta(1, "Hel") + RESPONSES_FAILED + delta(3, "lo"), RESPONSES_COMPLETED],
        RESPONSES_FAILED,
    ),
}


@contextlib.asynccontextmanager
async def scripted_upstream(script: str, cut: asyncio.Event) -> AsyncIterator[str]:
    """Serves the script's writes, then keeps the stream open sending pings for a long
    while: `cut` is set when the gateway drops the connection (the upstream is cancelled)."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            for write in SCRIPTS[script][0]:
                await response.write(write)
                await asyncio.sleep(0.05)
            for _ in range(400):  # 20 s: past any test's wait for `cut`, unless cut
                await response.write(b": ping\n\n")
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError):
            cut.set()
            raise
        return response

    app = web.Application(handler_args={"handler_cancellation": True})
    app.router.add_post("/v1/chat/completions", stream)
    app.router.add_post("/v1/responses", stream)
    async with serving(app) as origin:
        yield f"{origin}/v1"


def type_of(event: bytes) -> str | None:
    parsed = json_of(event)
    assert isinstance(parsed, dict), event
    return parsed.get("type")


CHAT = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "m", "stream": True, "input": "hi"}


def ledger(tmp_path) -> list[tuple]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        return db.execute("SELECT status, outcome, error_code FROM usage_ledger").fetchall()


@pytest.mark.parametrize("script", sorted(SCRIPTS))
async def test_a_stream_ends_at_the_upstreams_error_event_and_is_booked_failed(tmp_path, script):
    """The client's stream ends on the upstream's error event (nothing after it, no second
    error), the upstream is cut, and the row says 502 upstream_unavailable, charged."""
    path = "/v1/chat/completions" if script.startswith("chat") else "/v1/responses"
    cut = asyncio.Event()
    async with scripted_upstream(script, cut) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            headers = {"authorization": f"Bearer {await gw.token()}"}
            body = CHAT if path.startswith("/v1/chat") else RESPONSES
            async with httpx.AsyncClient(base_url=gw.origin, timeout=20) as http:
                reply = await http.post(path, json=body, headers=headers)
            await asyncio.wait_for(cut.wait(), timeout=15)
    assert reply.status_code == 200
    events = [event for event in reply.content.split(b"\n\n") if event.strip()]
    last, error_event = events[-1], SCRIPTS[script][1]  # (a Responses id is rewritten)
    assert last.split(b"\n")[0] == error_event.split(b"\n")[0]
    assert type_of(last) == type_of(error_event)
    assert b"more" not in reply.content and b'"lo"' not in reply.content
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        rows = db.execute(
            "SELECT status, outcome, error_code, output_tokens FROM usage_ledger"
        ).fetchall()
    assert [row[:3] for row in rows] == [FAILED]
    assert rows[0][3] > 0  # charged for what was generated before the error


async def test_the_sdk_raises_at_the_error_event_and_the_row_agrees(tmp_path):
    """The official SDK raises at the upstream's error event (content after it in the same
    read included) and hangs up; the row says the upstream failed, not 499."""
    cut = asyncio.Event()
    async with scripted_upstream("chat_one_read", cut) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            client = await gw.openai()
            stream = await client.chat.completions.create(**CHAT)
            with pytest.raises(openai.APIError, match="boom"):
                _ = [c async for c in stream]
            await asyncio.wait_for(cut.wait(), timeout=15)
    assert ledger(tmp_path) == [FAILED]
