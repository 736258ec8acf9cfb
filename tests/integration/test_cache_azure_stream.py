"""A cached Azure OpenAI stream, served again: Azure opens a stream with the prompt's
filter results on a chunk whose `id` and `model` are "" and `created` 0; every hit,
streamed or whole, names the answer as its miss's own chunks did and keeps Azure's
filter results. Real gateway, an Azure-like upstream, the official openai SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.sse import events_of, json_of
from tests.support.aiohttp_app import serving
from tests.support.gateway import RunningGateway, running_gateway

POLICY = """
providers:
  az: {{type: azure, api_base: "{origin}", api_key: "${{AZ_KEY}}", api_version: "2024-10-21"}}
models:
  gpt-4o: {{deployments: [{{provider: az, model: gpt4o-deploy}}]}}
routing: {{timeout_s: 10, attempt_timeout_s: 5, retries: 0}}
teams:
  search:
    models: ["*"]
    cache: {{ttl_s: 3600, max_bytes: 1000000}}
"""
PROMPT_FILTERS = [
    {"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}}}
]
TEXT_FILTERS = {"violence": {"filtered": False, "severity": "safe"}}
USAGE = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
CACHE = "x-gateway-cache"


def azure_stream() -> bytes:
    head = {"id": "chatcmpl-AZ123", "object": "chat.completion.chunk", "created": 1733000000}
    head |= {"model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_az"}
    blank = {"id": "", "object": "", "created": 0, "model": ""}

    def chunk(delta: dict[str, Any], filters: dict[str, Any], finish: str | None = None) -> Any:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [{**choice, "content_filter_results": filters}]}

    chunks = [
        {**blank, "choices": [], "prompt_filter_results": PROMPT_FILTERS},
        chunk({"role": "assistant", "content": ""}, {}),
        chunk({"content": "Hello"}, TEXT_FILTERS),
        chunk({}, {}, "stop"),
        {**head, "choices": [], "usage": USAGE},
    ]
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


@pytest.fixture
async def azure(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, list[Any]]]:
    """An Azure-like upstream that streams every answer; yields its origin and the bodies
    it received."""
    monkeypatch.setenv("AZ_KEY", "azure-secret")
    received: list[Any] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        received.append(await request.json())
        return web.Response(body=azure_stream(), content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", answer)
    async with serving(app) as origin:
        yield origin, received


async def stream(
    gw: RunningGateway, http: aiohttp.ClientSession
) -> tuple[str, list[dict[str, Any]]]:
    """The x-gateway-cache header and the chunks of a streamed request."""
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    headers = {"authorization": f"Bearer {await gw.token('search')}"}
    async with http.post(f"{gw.base_url}/chat/completions", json=body, headers=headers) as r:
        assert r.status == 200
        data = await r.read()
        status = r.headers[CACHE]
    chunks = [json_of(e) for e in events_of(data) if not e.startswith(b"data: [DONE]")]
    return status, chunks


def named(chunk: dict[str, Any]) -> tuple[Any, Any, Any]:
    return chunk["id"], chunk["model"], chunk["created"]


async def test_a_hit_of_an_azure_stream_names_the_answer_as_its_miss_did(
    tmp_path: Path, azure: tuple[str, list[Any]], http: aiohttp.ClientSession
) -> None:
    """The miss relays Azure's stream as it came; the streamed hit and the whole hit carry
    its real id, model, created and fingerprint, and Azure's filter results."""
    origin, received = azure
    async with running_gateway(tmp_path, POLICY.format(origin=origin)) as gw:
        status, missed = await stream(gw, http)
        assert status == "miss"
        assert named(missed[0]) == ("", "", 0)  # Azure's filter chunk, relayed as sent
        answer = named(missed[1])
        assert answer == ("chatcmpl-AZ123", "gpt-4o-2024-08-06", 1733000000)

        status, replayed = await stream(gw, http)
        assert status == "hit"
        assert {named(chunk) for chunk in replayed} == {answer}
        assert replayed[0]["prompt_filter_results"] == PROMPT_FILTERS
        text = [c["choices"][0] for c in replayed if c["choices"]]
        assert "".join(c["delta"].get("content") or "" for c in text) == "Hello"
        assert [c["content_filter_results"] for c in text if "content_filter_results" in c] == [
            TEXT_FILTERS
        ]

        client = await gw.openai("search")
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        whole = raw.parse()
    assert raw.headers[CACHE] == "hit"
    assert (whole.id, whole.model, whole.created) == answer
    assert whole.system_fingerprint == "fp_az"
    assert whole.choices[0].message.content == "Hello"
    extra = whole.model_extra or {}
    assert extra["prompt_filter_results"] == PROMPT_FILTERS
    assert (whole.choices[0].model_extra or {})["content_filter_results"] == TEXT_FILTERS
    assert len(received) == 1
