"""An upstream answer holding a lone UTF-16 surrogate escape (`"\\ud83d"`: half an emoji,
as servers that cut strings by UTF-16 unit send it) is served and booked, with or
without output rules (probe p16): a guarded stream was cut mid-body with no error
event (the scanner raised inside RE2), and a whole answer was a 502 with 0 tokens
booked that the SDK retried twice, each a billed generation. Python's `json`, the
openai SDK's reader, takes the escape; the gateway serves a whole answer with U+FFFD in
its place. Real gateway, a hand-written upstream, the official openai SDK."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{origin}/v1"}}
models:
  chat: {{deployments: [{{provider: up, model: m}}]}}
routing: {{timeout_s: 10, attempt_timeout_s: 5, retries: 0}}
teams:
  guarded: {{models: ["*"], guardrails: [strict]}}
  plain: {{models: ["*"]}}
guardrails:
  strict:
    output:
      - {{keywords: [zebracorn], name: no_zebra, action: block}}
      - {{detector: secrets, action: redact}}
"""
USAGE = b'"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}'
WHOLE = (
    b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":'
    b'[{"index":0,"message":{"role":"assistant","content":"half \\ud83d an emoji"},'
    b'"finish_reason":"stop"}],' + USAGE + b"}"
)
CHUNK = b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":'
STREAM = (
    CHUNK
    + b'[{"index":0,"delta":{"role":"assistant","content":"half \\ud83d"}}]}\n\n'
    + CHUNK
    + b'[{"index":0,"delta":{"content":" an emoji"},"finish_reason":"stop"}]}\n\n'
    + CHUNK
    + b"[],"
    + USAGE
    + b"}\n\n"
    + b"data: [DONE]\n\n"
)


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, list[Any]]]:
    calls: list[Any] = []

    async def answer(request: web.Request) -> web.Response:
        body = await request.json()
        calls.append(body)
        if body.get("stream"):
            return web.Response(body=STREAM, content_type="text/event-stream")
        return web.Response(body=WHOLE, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    async with serving(app) as origin:
        yield origin, calls


def booked(tmp_path) -> list[tuple[str, int, int, int]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        return db.execute(
            "SELECT team, status, input_tokens, output_tokens FROM usage_ledger ORDER BY team"
        ).fetchall()


@pytest.mark.parametrize("team", ["guarded", "plain"])
async def test_a_lone_surrogate_is_served_and_booked(tmp_path, upstream, team):
    origin, calls = upstream
    async with running_gateway(tmp_path, POLICY.format(origin=origin)) as gw:
        client = await gw.openai(team, max_retries=2)
        messages: Any = [{"role": "user", "content": "hi"}]
        whole = await client.chat.completions.create(model="chat", messages=messages)
        assert whole.choices[0].message.content == "half \ufffd an emoji"
        assert whole.usage is not None and whole.usage.completion_tokens == 5

        stream = await client.chat.completions.create(model="chat", messages=messages, stream=True)
        text = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(text).startswith("half ") and "".join(text).endswith(" an emoji")
        assert len(calls) == 2  # one upstream call each: nothing retried
        for _ in range(100):  # the ledger writer's batches land within ~0.2 s
            if len(booked(tmp_path)) == 2:
                break
            await asyncio.sleep(0.05)
    assert booked(tmp_path) == [(team, 200, 7, 5)] * 2


RESPONSE = (
    b'{"id":"resp_up1","object":"response","created_at":1,"model":"m","status":"%b",'
    b'"output":[%b],"usage":%b}'
)
TEXT_ITEM = (
    b'{"type":"message","id":"msg_up1","role":"assistant","status":"completed","content":'
    b'[{"type":"output_text","text":"half \\ud83d","annotations":[],"score":NaN}]}'
)
RESPONSES_USAGE = b'{"input_tokens":11,"output_tokens":7,"total_tokens":18}'


def responses_stream() -> bytes:
    created = RESPONSE % (b"in_progress", b"", b"null")
    completed = RESPONSE % (b"completed", TEXT_ITEM, RESPONSES_USAGE)
    events = [
        (b"response.created", b'{"type":"response.created","response":' + created + b"}"),
        (
            b"response.output_text.delta",
            b'{"type":"response.output_text.delta","item_id":"msg_up1","output_index":0,'
            b'"content_index":0,"delta":"half \\ud83d"}',
        ),
        (b"response.completed", b'{"type":"response.completed","response":' + completed + b"}"),
    ]
    return b"".join(b"event: " + kind + b"\ndata: " + data + b"\n\n" for kind, data in events)


@pytest.mark.parametrize("team", ["guarded", "plain"])
async def test_a_responses_stream_ending_on_nan_and_a_lone_surrogate_ends_well(tmp_path, team):
    """The last event repeats the answer: a lone surrogate or a NaN there (Python servers
    write NaN) made the gateway add an error event after `response.completed` and book a
    502 with its own estimate (probe p20)."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=responses_stream(), content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/responses", answer)
    async with (
        serving(app) as origin,
        running_gateway(tmp_path, POLICY.format(origin=origin)) as gw,
    ):
        client = await gw.openai(team, max_retries=0)
        stream = await client.responses.create(model="chat", input="hi", stream=True)
        kinds = [event.type async for event in stream]
        assert kinds == ["response.created", "response.output_text.delta", "response.completed"]
        for _ in range(100):
            if booked(tmp_path):
                break
            await asyncio.sleep(0.05)
    assert booked(tmp_path) == [(team, 200, 11, 7)]
