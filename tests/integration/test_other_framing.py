"""An OpenAI-compatible server that answers in the other framing than asked (black-box
probe): a whole JSON answer to `stream: true` (servers that ignore it), an SSE stream
to a whole request. The answer is complete and billed: the client gets it in the
framing it asked for, from the first attempt, and the ledger books its usage."""

from __future__ import annotations

import asyncio
import sqlite3

import openai
import orjson
from aiohttp import web

from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{origin}/v1"}}
models:
  m:
    deployments: [{{provider: up, model: up-model}}]
    routing: {{retries: 2}}
teams:
  demo: {{models: ["*"]}}
"""
USAGE = {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
WHOLE = {
    "id": "chatcmpl-w",
    "object": "chat.completion",
    "created": 1,
    "model": "up-model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "whole answer"},
            "finish_reason": "stop",
        }
    ],
    "usage": USAGE,
}


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


STREAM = (
    _chunk({"role": "assistant", "content": ""})
    + _chunk({"content": "streamed "})
    + _chunk({"content": "answer"})
    + _chunk({}, "stop")
    + b"data: [DONE]\n\n"
)


def _contrary_upstream(calls: list[bool]) -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        asked_stream = bool((await request.json()).get("stream"))
        calls.append(asked_stream)
        if asked_stream:
            return web.json_response(WHOLE)
        return web.Response(body=STREAM, content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def _ledger(tmp_path) -> list[tuple[int, int, int, int]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        return db.execute(  # the streamed request's row first (rows land in any order)
            "SELECT status, input_tokens, output_tokens, attempts FROM usage_ledger"
            " ORDER BY stream DESC"
        ).fetchall()


async def test_an_answer_in_the_other_framing_is_served_once_and_booked(tmp_path) -> None:
    calls: list[bool] = []
    async with (
        serving(_contrary_upstream(calls)) as origin,
        running_gateway(tmp_path, POLICY.format(origin=origin)) as gw,
    ):
        client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=await gw.token(), max_retries=0)
        messages = [{"role": "user", "content": "hi"}]
        pieces = []
        usage = None
        stream = await client.chat.completions.create(
            model="m", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        async for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
            if chunk.usage is not None:
                usage = chunk.usage
        assert "".join(pieces) == "whole answer"
        assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (7, 4)
        whole = await client.chat.completions.create(model="m", messages=messages)
        assert whole.choices[0].message.content == "streamed answer"
        assert whole.choices[0].finish_reason == "stop"
        await client.close()
        for _ in range(50):  # the ledger writer lands its batch
            if len(_ledger(tmp_path)) == 2:
                break
            await asyncio.sleep(0.1)
    assert calls == [True, False]  # one attempt each: nothing generated twice
    stream_row, whole_row = _ledger(tmp_path)
    assert stream_row == (200, 7, 4, 1)
    assert whole_row[0] == 200 and whole_row[3] == 1
    assert whole_row[1] > 0 and whole_row[2] > 0  # counted: the stream carried no usage
