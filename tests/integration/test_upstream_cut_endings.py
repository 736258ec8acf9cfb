"""Streams an upstream closes without `[DONE]`, and a caller's own 404, through the
openai SDK (probe p11):

- an `n: 2` answer cut after choice 0 finished, choice 1 not: it passed as a 200 with a
  `[DONE]` the gateway made up, booked ok; now the error event and a 502 row;
- a Responses stream cut early whose `response.created` echoes a tool schema holding
  `{"type": "response.completed"}`: the bytes search took it for the end;
- OpenAI's 404 `Item with id 'rs_…' not found` (`param: input`) was failed over: a 502,
  the SDK's retries, the deployments cooled down for every team; now passed back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import openai
import orjson
import pytest
from aiohttp import web

from gateway.routing.affinity import mint_item_id
from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{origin}/v1"}}
  other: {{type: openai-compatible, api_base: "{origin}/other/v1"}}
models:
  m:
    deployments: [{{provider: up, model: up-model}}, {{provider: other, model: up-model}}]
teams:
  demo: {{models: ["*"]}}
"""
ITEM_404 = {
    "error": {
        "message": "Item with id 'rs_123' not found. Items are not persisted when `store` is "
        "set to false.",
        "type": "invalid_request_error",
        "param": "input",
        "code": None,
    }
}


def _sse(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _choice(index: int, content: str | None, finish: str | None) -> bytes:
    delta = {} if content is None else {"content": content}
    return _sse(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "up-model",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
        }
    )


def _upstream(calls: list[str]) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        calls.append(f"{request.path} {body['messages'][0]['content']}")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_choice(0, "choice zero", None) + _choice(0, None, "stop"))
        await response.write(_choice(1, "choice one was cut in the mid", None))
        if body["messages"][0]["content"] == "both":
            await response.write(_choice(1, None, "stop"))
        return response  # closed well, without [DONE]

    async def responses(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        calls.append(f"{request.path} responses")
        if not body.get("stream"):
            return web.json_response(ITEM_404, status=404)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        created = {
            "type": "response.created",
            "sequence_number": 0,
            "response": {
                "id": "resp_1",
                "object": "response",
                "created_at": 1,
                "status": "in_progress",
                "model": "up-model",
                "output": [],
                "tools": body.get("tools", []),
            },
        }
        delta = {
            "type": "response.output_text.delta",
            "sequence_number": 1,
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "partial",
        }
        await response.write(_sse(created) + _sse(delta))
        return response  # cut before response.completed

    app = web.Application()
    for prefix in ("/v1", "/other/v1"):
        app.router.add_post(f"{prefix}/chat/completions", chat)
        app.router.add_post(f"{prefix}/responses", responses)
    return app


def _rows(tmp_path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        return db.execute("SELECT endpoint, status FROM usage_ledger ORDER BY rowid").fetchall()


async def _until_rows(tmp_path: Path, count: int) -> list[tuple[str, int]]:
    for _ in range(50):
        rows = _rows(tmp_path)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"{count} rows expected, have {_rows(tmp_path)}")


async def test_a_stream_of_two_choices_cut_in_the_second_ends_in_an_error(tmp_path) -> None:
    calls: list[str] = []
    async with (
        serving(_upstream(calls)) as origin,
        running_gateway(tmp_path, POLICY.format(origin=origin)) as gw,
    ):
        client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=await gw.token(), max_retries=0)
        got: dict[int, str | None] = {}
        with pytest.raises(openai.APIError):
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "cut"}], n=2, stream=True
            )
            async for chunk in stream:
                for choice in chunk.choices:
                    got[choice.index] = choice.finish_reason or got.get(choice.index)
        assert got == {0: "stop", 1: None}
        # Both finished, no [DONE]: complete, and the client gets OpenAI's [DONE].
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "both"}], n=2, stream=True
        )
        finishes = [c.finish_reason async for chunk in stream for c in chunk.choices]
        assert finishes.count("stop") == 2
        await client.close()
        rows = await _until_rows(tmp_path, 2)
    assert sorted(rows) == [("chat", 200), ("chat", 502)]
    assert [call.split()[-1] for call in calls] == ["cut", "both"]  # one attempt each


async def test_a_cut_responses_stream_echoing_a_terminal_type_ends_in_an_error(tmp_path) -> None:
    tools = [
        {
            "type": "function",
            "name": "f",
            "parameters": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "default": {"type": "response.completed"}}
                },
            },
        }
    ]
    calls: list[str] = []
    async with (
        serving(_upstream(calls)) as origin,
        running_gateway(tmp_path, POLICY.format(origin=origin)) as gw,
    ):
        client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=await gw.token(), max_retries=0)
        stream = await client.responses.create(
            model="m",
            input="hi",
            tools=tools,  # type: ignore[arg-type]
            stream=True,
        )
        kinds = [event.type async for event in stream]
        # OpenAI's Responses error event, which the SDK yields (it ended with no error)
        assert kinds == ["response.created", "response.output_text.delta", "error"]
        await client.close()
        assert await _until_rows(tmp_path, 1) == [("responses", 502)]


async def test_a_404_about_the_callers_item_is_passed_back_not_failed_over(tmp_path) -> None:
    calls: list[str] = []
    async with (
        serving(_upstream(calls)) as origin,
        running_gateway(tmp_path, POLICY.format(origin=origin)) as gw,
    ):
        client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=await gw.token())
        # An id the gateway minted for the team (the upstream has forgotten its item).
        item = mint_item_id(gw.services.response_id_key, "demo", "rs_123")
        for _ in range(4):  # more than the failure threshold: no deployment cools down
            with pytest.raises(openai.NotFoundError) as missing:
                await client.responses.create(
                    model="m", input=[{"type": "item_reference", "id": item}]
                )
            assert f"Item with id '{item}' not found" in missing.value.message
            assert missing.value.body["param"] == "input"  # type: ignore[index]
        await client.close()
    assert len(calls) == 4  # one call each: no failover, no retry
