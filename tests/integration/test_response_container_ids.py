"""A code interpreter's container lives in the upstream account every team shares: its id
reaches the client minted for the team (whole answers, streams, a file citation's copy of
it), goes back upstream as the upstream's own when the team names it in a tool's
`container`, and one not minted for the caller's team (another team's, the raw id) is a
404 before anything is sent (probe p25: one team ran code in another's container).
Real gateway, a scripted upstream, the official openai SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

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
RAW = "cntr_up1abc"
CALL = {
    "type": "code_interpreter_call",
    "id": "ci_up1",
    "status": "completed",
    "code": "print(1)",
    "container_id": RAW,
    "outputs": None,
}
CITATION = {
    "type": "container_file_citation",
    "container_id": RAW,
    "file_id": "cfile_up1",
    "filename": "out.csv",
    "start_index": 0,
    "end_index": 2,
}
MESSAGE = {
    "type": "message",
    "id": "msg_up1",
    "role": "assistant",
    "status": "completed",
    "content": [{"type": "output_text", "text": "ok", "annotations": [CITATION]}],
}
USAGE = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}


def response(output: list[Any]) -> dict[str, Any]:
    return {"id": "resp_up1", "object": "response", "created_at": 1, "model": "m"} | {
        "status": "completed",
        "output": output,
        "usage": USAGE,
    }


def stream() -> bytes:
    events = [
        {"type": "response.created", "response": {**response([]), "status": "in_progress"}},
        {"type": "response.output_item.added", "output_index": 0, "item": CALL},
        {"type": "response.output_item.done", "output_index": 0, "item": CALL},
        {"type": "response.completed", "response": response([CALL, MESSAGE])},
    ]
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, list[Any]]]:
    sent: list[Any] = []

    async def answer(request: web.Request) -> web.Response:
        body = await request.json()
        sent.append(body)
        if body.get("stream"):
            return web.Response(body=stream(), content_type="text/event-stream")
        return web.json_response(response([CALL, MESSAGE]))

    app = web.Application()
    app.router.add_post("/v1/responses", answer)
    async with serving(app) as origin:
        yield origin, sent


async def client_of(gw: RunningGateway, team: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.base_url, api_key=await gw.token(team), max_retries=0)


def interpreter(container: Any) -> Any:
    return [{"type": "code_interpreter", "container": container}]


async def test_a_container_is_minted_for_its_team_and_refused_to_another(tmp_path, upstream):
    origin, sent = upstream
    async with running_gateway(tmp_path, POLICY.format(origin=origin)) as gw:
        alpha, beta = await client_of(gw, "alpha"), await client_of(gw, "beta")
        first = await alpha.responses.create(
            model="m", input="run it", tools=interpreter({"type": "auto"})
        )
        call, message = first.output
        container = call.container_id  # type: ignore[union-attr]
        assert container.startswith("cntr_") and RAW not in container
        cited = message.content[0].annotations[0]  # type: ignore[union-attr]
        assert cited.container_id == container  # type: ignore[union-attr]
        assert sent[0]["tools"] == interpreter({"type": "auto"})  # an object: as it was

        await alpha.responses.create(model="m", input="again", tools=interpreter(container))
        assert sent[1]["tools"] == interpreter(RAW)

        for foreign in (container, RAW, container[:-2] + "AA"):
            with pytest.raises(openai.NotFoundError) as missing:
                await beta.responses.create(model="m", input="x", tools=interpreter(foreign))
            assert missing.value.body["param"] == "tools[0].container"  # type: ignore[index]
            assert "not found" in missing.value.message
        await alpha.close()
        await beta.close()
    assert len(sent) == 2  # nothing of beta's was sent


async def test_a_stream_names_the_container_minted_throughout(
    tmp_path, upstream, http: aiohttp.ClientSession
):
    origin, _ = upstream
    async with running_gateway(tmp_path, POLICY.format(origin=origin)) as gw:
        headers = {"authorization": f"Bearer {await gw.token('alpha')}"}
        body = {"model": "m", "input": "run", "stream": True}
        async with http.post(f"{gw.base_url}/responses", json=body, headers=headers) as reply:
            assert reply.status == 200
            data = await reply.read()
    assert RAW.encode() not in data
    assert data.count(b'"container_id":"cntr_gw') == 4  # added, done, completed: call, citation
