"""Responses item ids are bound to the team, as response ids are (probe p16): the ids
of an answer's items (`msg_…`, `fc_…`, `rs_…`) reach the client minted for its team, an
input item naming one goes upstream as the upstream's own id, and an id the gateway did
not mint for the caller's team (another team's, an upstream's raw one) is refused as
OpenAI refuses an unknown item, before anything is sent: one team cannot pull another
team's stored item into its context through the shared upstream account. Real gateway,
a scripted upstream, the official openai SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from gateway.sse import events_of, json_of
from tests.support.aiohttp_app import serving
from tests.support.gateway import RunningGateway, running_gateway

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{origin}/v1"}}
models:
  m: {{deployments: [{{provider: up, model: m}}]}}
routing: {{timeout_s: 10, attempt_timeout_s: 5, retries: 0}}
teams:
  alpha: {{models: ["*"]}}
  beta: {{models: ["*"]}}
"""
USAGE = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
MESSAGE = {
    "type": "message",
    "id": "msg_up1",
    "role": "assistant",
    "status": "completed",
    "content": [{"type": "output_text", "text": "hi", "annotations": []}],
}
CALL = {
    "type": "function_call",
    "id": "fc_up1",
    "call_id": "call_1",
    "name": "f",
    "arguments": "{}",
    "status": "completed",
}


def response(output: list[Any]) -> dict[str, Any]:
    return {
        "id": "resp_up1",
        "object": "response",
        "created_at": 1,
        "model": "m",
        "status": "completed",
        "output": output,
        "usage": USAGE,
    }


def stream() -> bytes:
    item = {**MESSAGE, "id": "msg_up2", "content": [], "status": "in_progress"}
    done = {**MESSAGE, "id": "msg_up2"}
    events = [
        {"type": "response.created", "response": {**response([]), "status": "in_progress"}},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.output_text.delta", "item_id": "msg_up2", "output_index": 0}
        | {"content_index": 0, "delta": "hi"},
        {"type": "response.output_item.done", "output_index": 0, "item": done},
        {"type": "response.completed", "response": response([done])},
    ]
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, list[Any]]]:
    inputs: list[Any] = []

    async def answer(request: web.Request) -> web.Response:
        body = await request.json()
        inputs.append(body["input"])
        if body.get("stream"):
            return web.Response(body=stream(), content_type="text/event-stream")
        return web.json_response(response([MESSAGE, CALL]))

    app = web.Application()
    app.router.add_post("/v1/responses", answer)
    async with serving(app) as origin:
        yield origin, inputs


async def client_of(gw: RunningGateway, team: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.base_url, api_key=await gw.token(team), max_retries=0)


async def test_an_answer_s_items_are_minted_and_go_back_upstream_as_its_own(tmp_path, upstream):
    origin, inputs = upstream
    async with running_gateway(tmp_path, POLICY.format(origin=origin)) as gw:
        alpha = await client_of(gw, "alpha")
        first = await alpha.responses.create(model="m", input="hi")
        message_id, call_id = (item.id for item in first.output)
        assert message_id.startswith("msg_") and message_id != "msg_up1"
        assert call_id.startswith("fc_") and call_id != "fc_up1"
        # The usual agent loop: the answer's items, then the tool's output, sent back.
        again: Any = [
            *(item.model_dump(exclude_none=True) for item in first.output),
            {"type": "function_call_output", "call_id": "call_1", "output": "42"},
            {"type": "item_reference", "id": message_id},
        ]
        await alpha.responses.create(model="m", input=again)
        await alpha.close()
    sent = inputs[1]
    assert [item.get("id") for item in sent] == ["msg_up1", "fc_up1", None, "msg_up1"]


async def test_a_streamed_answer_names_its_items_with_minted_ids_throughout(
    tmp_path, upstream, http: aiohttp.ClientSession
):
    origin, _ = upstream
    async with running_gateway(tmp_path, POLICY.format(origin=origin)) as gw:
        headers = {"authorization": f"Bearer {await gw.token('alpha')}"}
        body = {"model": "m", "input": "hi", "stream": True}
        async with http.post(f"{gw.base_url}/responses", json=body, headers=headers) as reply:
            assert reply.status == 200
            data = await reply.read()
    assert b"msg_up2" not in data
    events = [json_of(event) for event in events_of(data)]
    named = {e["item"]["id"] for e in events if "item" in e}
    named |= {e["item_id"] for e in events if "item_id" in e}
    named |= {i["id"] for e in events if "response" in e for i in e["response"]["output"]}
    assert len(named) == 1 and named.pop().startswith("msg_")


async def test_ids_not_minted_for_the_team_are_refused_before_anything_is_sent(tmp_path, upstream):
    origin, inputs = upstream
    async with running_gateway(tmp_path, POLICY.format(origin=origin)) as gw:
        alpha, beta = await client_of(gw, "alpha"), await client_of(gw, "beta")
        alphas = (await alpha.responses.create(model="m", input="hi")).output[0].id
        for item in (
            {"type": "item_reference", "id": alphas},  # another team's
            {"type": "item_reference", "id": "msg_up1"},  # the upstream's raw id
            {**MESSAGE, "id": alphas},  # an item given again with another team's id
            {"type": "item_reference", "id": alphas[:-2] + "AA"},  # altered
        ):
            with pytest.raises(openai.NotFoundError) as missing:
                await beta.responses.create(model="m", input=[item])  # type: ignore[list-item]
            assert missing.value.body["param"] == "input"  # type: ignore[index]
            assert "not found" in missing.value.message
        await alpha.close()
        await beta.close()
    assert len(inputs) == 1  # alpha's first request only
