"""A cached answer served in the other format than its miss (streamed, then whole; whole,
then streamed) is what that format's miss would have been: the whole-answer output rules
judge a stream before it is stored, annotations and logprobs follow the README's rules,
and an upstream's 4xx says how the cache saw it. Real gateway, scripted upstream, the
official openai SDK (raw SSE where the SDK's types hide a field)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
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
  up: {{type: openai-compatible, api_base: "{base}/v1"}}
models:
  chat: {{deployments: [{{provider: up, model: upstream-chat}}]}}
routing: {{timeout_s: 10, attempt_timeout_s: 5, retries: 0}}
teams:
  ti:
    models: ["*"]
    cache: {{ttl_s: 3600, max_bytes: 1000000}}
    guardrails: [outu]
  plain:
    models: ["*"]
    cache: {{ttl_s: 3600, max_bytes: 1000000}}
guardrails:
  outu:
    output:
      - {{pattern: "(?s)BEGIN.*END", name: unb, action: {action}}}
"""
X = "|".join(["y" * 50] * 7)
UNBOUNDED = f"BEGIN |{X}| END"  # 360 characters: past a stream's 256-character hold-back
CITATION = {
    "type": "url_citation",
    "url_citation": {"start_index": 0, "end_index": 5, "url": "https://x.test/", "title": "X"},
}
CACHE = "x-gateway-cache"


def reply_text(body: dict[str, Any]) -> str:
    """The upstream says what follows `SAY:` in the last message (else a greeting)."""
    said = str(body["messages"][-1]["content"])
    return said.partition("SAY:")[2] or "Hello from the upstream"


def logprobs_of(piece: str) -> dict[str, Any]:
    return {"content": [{"token": piece, "logprob": -0.5, "bytes": None, "top_logprobs": []}]}


def whole_answer(body: dict[str, Any]) -> dict[str, Any]:
    text = reply_text(body)
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if "cite" in text:
        message["annotations"] = [CITATION]
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "upstream-chat",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": logprobs_of(text) if body.get("logprobs") else None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
    }


def stream_events(body: dict[str, Any]) -> bytes:
    """OpenAI's shape: role, the text in deltas of 20 characters (annotations on the last,
    logprobs on each when asked), the finish reason, the usage chunk, [DONE]."""
    text = reply_text(body)
    head = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1700000000}
    head["model"] = "upstream-chat"
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": text[i : i + 20]} for i in range(0, len(text), 20)]
    if "cite" in text:
        deltas[-1]["annotations"] = [CITATION]
    chunks = []
    for delta in deltas:
        piece = delta["content"]
        logprobs = logprobs_of(piece) if body.get("logprobs") and piece else None
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": None}
        chunks.append({**head, "choices": [choice]})
    finish = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    chunks.append({**head, "choices": [finish]})
    usage = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    chunks.append({**head, "choices": [], "usage": usage})
    lines = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks]
    return b"".join(lines) + b"data: [DONE]\n\n"


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """An upstream on 127.0.0.1 answering whole or streamed; `REJECT` in a prompt is its
    400. Yields its origin and the bodies it received."""
    received: list[dict[str, Any]] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        received.append(body)
        if "REJECT" in str(body["messages"]):
            error = {"message": "bad prompt", "type": "invalid_request_error", "param": None}
            return web.json_response({"error": {**error, "code": "bad_prompt"}}, status=400)
        if body.get("stream"):
            return web.Response(body=stream_events(body), content_type="text/event-stream")
        return web.json_response(whole_answer(body))

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    async with serving(app) as origin:
        yield origin, received


def gateway_for(tmp_path: Path, origin: str, action: str = "block") -> Any:
    return running_gateway(tmp_path, POLICY.format(base=origin, action=action))


def ask(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": content}], **extra}


async def post(
    gw: RunningGateway, http: aiohttp.ClientSession, team: str, body: dict[str, Any], **headers: str
) -> tuple[int, dict[str, str], bytes]:
    headers["authorization"] = f"Bearer {await gw.token(team)}"
    async with http.post(f"{gw.base_url}/chat/completions", json=body, headers=headers) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()


def chunks_of(data: bytes) -> list[dict[str, Any]]:
    return [json_of(event) for event in events_of(data) if not event.startswith(b"data: [DONE]")]


async def ledger(tmp_path: Path, request_id: str) -> tuple[str, Any]:
    """(cache, guardrails) of a request's ledger row, once the writer stored it."""
    for _ in range(100):
        with sqlite3.connect(tmp_path / "gateway.db") as db:
            row = db.execute(
                "SELECT cache, guardrails FROM usage_ledger WHERE request_id = ?", (request_id,)
            ).fetchone()
        if row is not None:
            return row[0], json.loads(row[1] or "null")
        await asyncio.sleep(0.05)
    raise AssertionError("ledger row missing")


async def test_a_stream_a_whole_answer_would_block_is_not_served_whole(tmp_path, upstream, http):
    """Whole: 400 unb. Streamed: the 360-character match passes (README). Whole again: the
    400 again, fetched afresh (the stream was not stored), never a hit holding it."""
    origin, received = upstream
    async with gateway_for(tmp_path, origin) as gw:
        body = ask(f"SAY:{UNBOUNDED}")
        status, _, data = await post(gw, http, "ti", body, **{"cache-control": "no-store"})
        assert (status, orjson.loads(data)["error"]["code"]) == (400, "content_policy_violation")
        status, headers, data = await post(gw, http, "ti", {**body, "stream": True})
        streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks_of(data))
        assert (status, headers[CACHE], streamed) == (200, "miss", UNBOUNDED)
        status, headers, data = await post(gw, http, "ti", body)
    assert (status, headers[CACHE]) == (400, "miss")
    assert orjson.loads(data)["error"]["code"] == "content_policy_violation"
    assert "unb" in orjson.loads(data)["error"]["message"]
    assert len(received) == 3


async def test_a_stream_is_stored_as_the_whole_answer_would_be_redacted(tmp_path, upstream, http):
    """With `redact`, the stored entry is the whole answer's redaction, and the hit's row
    names the rule that made it."""
    origin, _ = upstream
    async with gateway_for(tmp_path, origin, action="redact") as gw:
        body = ask(f"SAY:{UNBOUNDED}")
        _, _, fresh = await post(gw, http, "ti", body, **{"cache-control": "no-store"})
        await post(gw, http, "ti", {**body, "stream": True})
        status, headers, data = await post(gw, http, "ti", body)
        cache, guardrails = await ledger(tmp_path, headers["x-request-id"])
    expected = orjson.loads(fresh)["choices"][0]["message"]["content"]
    assert expected == "[REDACTED:unb]"
    assert (status, headers[CACHE]) == (200, "hit")
    assert orjson.loads(data)["choices"][0]["message"]["content"] == expected
    assert cache == "hit"
    assert guardrails == [{"rule": "unb", "action": "redact", "where": "output"}]


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_4xx_says_how_the_cache_saw_it(tmp_path, upstream, http, stream):
    """The relayed 400 carries x-gateway-cache: miss, as its ledger row says."""
    origin, _ = upstream
    async with gateway_for(tmp_path, origin) as gw:
        client = await gw.openai("plain")
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(**ask("REJECT this"), stream=stream)
        headers = refused.value.response.headers
        cache, _ = await ledger(tmp_path, headers["x-request-id"])
    assert (refused.value.code, headers.get(CACHE), cache) == ("bad_prompt", "miss", "miss")


async def test_annotations_cross_from_whole_to_stream_and_back(tmp_path, upstream, http):
    """A whole answer's url_citation comes back on its streamed hit; a stream's on its
    whole hit."""
    origin, _ = upstream
    async with gateway_for(tmp_path, origin) as gw:
        first = ask("SAY:Hello, cite me")
        await post(gw, http, "plain", first)
        _, headers, data = await post(gw, http, "plain", {**first, "stream": True})
        assert headers[CACHE] == "hit"
        replayed = [c["choices"][0]["delta"].get("annotations") for c in chunks_of(data)]
        assert [CITATION] in replayed
        second = ask("SAY:Another one, cite me")
        await post(gw, http, "plain", {**second, "stream": True})
        client = await gw.openai("plain")
        raw = await client.chat.completions.with_raw_response.create(**second)
    assert raw.headers[CACHE] == "hit"
    message = raw.parse().choices[0].message
    assert [a.model_dump() for a in message.annotations or []] == [CITATION]


async def test_logprobs_follow_the_format_a_hit_is_served_in(tmp_path, upstream, http):
    """Team with an output rule that never fires: a whole hit of a streamed miss has the
    whole answer's logprobs; a streamed hit of a whole miss has none, as its miss would."""
    origin, _ = upstream
    async with gateway_for(tmp_path, origin) as gw:
        streamed_first = ask("SAY:Hello there", logprobs=True)
        _, _, data = await post(gw, http, "ti", {**streamed_first, "stream": True})
        assert [c["choices"][0]["logprobs"] for c in chunks_of(data) if c["choices"]] == [None] * 3
        _, headers, data = await post(gw, http, "ti", streamed_first)
        assert headers[CACHE] == "hit"
        logprobs = orjson.loads(data)["choices"][0]["logprobs"]
        assert "".join(t["token"] for t in logprobs["content"]) == "Hello there"
        whole_first = ask("SAY:Good morning", logprobs=True)
        _, _, data = await post(gw, http, "ti", whole_first)
        assert orjson.loads(data)["choices"][0]["logprobs"] is not None
        _, headers, data = await post(gw, http, "ti", {**whole_first, "stream": True})
    assert headers[CACHE] == "hit"
    assert [c["choices"][0]["logprobs"] for c in chunks_of(data) if c["choices"]] == [None] * 3
