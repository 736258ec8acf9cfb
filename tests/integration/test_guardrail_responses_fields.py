"""Responses texts in fields the output rules once read only in part, over real HTTP
with the official openai SDK and a mock upstream: a key in a web search's
`action.sources[].url` (streamed in `response.output_item.done`, and in a whole answer),
and one in a stream event's own top-level key. A block rule ends the stream with the
rule's error (or refuses the whole answer); a redact rule puts its marker where the key
was; an image's base64 `result` goes on untouched."""

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from tests.support.gateway import running_gateway

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}", api_key: "${{UPSTREAM_KEY}}"}}
models:
  gpt-4o-mini:
    deployments: [{{provider: up, model: upstream-chat}}]
teams:
  demo: {{models: ["*"], guardrails: [keys]}}
  hush: {{models: ["*"], guardrails: [hidden]}}
guardrails:
  keys:
    output:
      - {{detector: secrets, action: block}}
  hidden:
    output:
      - {{detector: secrets, action: redact}}
"""
KEY = "AKIAIOSFODNN7EXAMPLE"
MARK = "[REDACTED:secrets]"
USAGE = {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}
SEARCH = {
    "type": "web_search_call",
    "id": "ws_1",
    "status": "completed",
    "action": {
        "type": "search",
        "query": "weather",
        "sources": [{"type": "url", "url": f"https://example.com/{KEY}"}],
    },
}
IMAGE = {"type": "image_generation_call", "id": "ig_1", "status": "completed"}
IMAGE |= {"result": f"iVBOR{KEY}w0KGgo="}  # base64 that happens to spell a key


@dataclass
class Upstream:
    """Answers each request with `answer(body)`: a dict (JSON) or SSE events (dicts)."""

    answer: Callable[[dict[str, Any]], Any] = lambda body: {}
    bodies: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def setup(tmp_path, monkeypatch) -> AsyncIterator[tuple[Any, Upstream]]:
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    upstream = Upstream()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        upstream.bodies.append(body)
        answer = upstream.answer(body)
        if isinstance(answer, dict):
            return web.json_response(answer)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in answer:
            kind = event["type"].encode()
            await response.write(b"event: " + kind + b"\ndata: " + orjson.dumps(event) + b"\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/responses", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    try:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            yield gw, upstream
    finally:
        await runner.cleanup()


def response(status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": "upstream-chat",
        "output": output,
        "usage": USAGE if status == "completed" else None,
    }


def stream_of(item: dict[str, Any], **own: Any) -> list[dict[str, Any]]:
    """A Responses stream of one output item, `own` keys on its `.done` event."""
    done = {"type": "response.output_item.done", "sequence_number": 2, "output_index": 0}
    return [
        {"type": "response.created", "sequence_number": 0, "response": response("in_progress", [])},
        {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0}
        | {"item": {**item, "status": "in_progress", "action": {"type": "search"}}},
        done | {"item": item, **own},
        {"type": "response.completed", "sequence_number": 3}
        | {"response": response("completed", [item])},
    ]


async def events(client: openai.AsyncOpenAI) -> list[dict[str, Any] | str]:
    """Every event the client got, as dicts, then `error: CODE` if the stream raised."""
    seen: list[dict[str, Any] | str] = []
    try:
        stream = await client.responses.create(model="gpt-4o-mini", input="hi", stream=True)
        async for event in stream:
            seen.append(event.model_dump(warnings=False))
    except openai.APIError as error:
        seen.append(f"error: {error.code}")
    return seen


def last_done(seen: list[dict[str, Any] | str]) -> dict[str, Any]:
    dones = [e for e in seen if isinstance(e, dict) and e["type"] == "response.output_item.done"]
    return dones[-1]


async def test_a_streamed_key_in_a_web_search_s_sources_ends_the_stream(setup):
    """Block: the stream ends with content_policy_violation before the item goes out."""
    gw, upstream = setup
    upstream.answer = lambda body: stream_of(SEARCH)
    seen = await events(await gw.openai())
    joined = orjson.dumps(seen).decode()
    assert KEY not in joined and "content_policy_violation" in joined
    assert not any(isinstance(e, dict) and e["type"] == "response.completed" for e in seen)


async def test_a_streamed_key_in_a_web_search_s_sources_is_redacted_in_place(setup):
    """Redact: the `.done` item's source URL carries the marker, the stream completes."""
    gw, upstream = setup
    upstream.answer = lambda body: stream_of(SEARCH)
    seen = await events(await gw.openai("hush"))
    assert KEY not in orjson.dumps(seen).decode()
    url = last_done(seen)["item"]["action"]["sources"][0]["url"]
    assert url == f"https://example.com/{MARK}"
    completed = [e for e in seen if isinstance(e, dict) and e["type"] == "response.completed"]
    assert completed and MARK in orjson.dumps(completed[0]["response"]["output"]).decode()


async def test_a_key_in_a_stream_event_s_own_key_is_redacted_in_place(setup):
    """A provider's own key on an `output_item.done` event: redacted there."""
    gw, upstream = setup
    clean = {**SEARCH, "action": {"type": "search", "query": "weather"}}
    upstream.answer = lambda body: stream_of(clean, provider_note=f"key {KEY}")
    seen = await events(await gw.openai("hush"))
    assert KEY not in orjson.dumps(seen).decode()
    assert last_done(seen)["provider_note"] == f"key {MARK}"


async def test_a_key_in_a_stream_event_s_own_key_ends_the_stream(setup):
    gw, upstream = setup
    clean = {**SEARCH, "action": {"type": "search", "query": "weather"}}
    upstream.answer = lambda body: stream_of(clean, provider_note=f"key {KEY}")
    joined = orjson.dumps(await events(await gw.openai())).decode()
    assert KEY not in joined and "content_policy_violation" in joined


async def test_a_whole_answer_with_a_key_in_a_web_search_s_sources_is_refused(setup):
    """Block on a whole answer: 400 content_policy_violation naming the rule."""
    gw, upstream = setup
    upstream.answer = lambda body: response("completed", [SEARCH])
    client = await gw.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="gpt-4o-mini", input="hi")
    assert caught.value.code == "content_policy_violation" and KEY not in str(caught.value)


async def test_a_whole_answer_s_image_result_goes_on_untouched(setup):
    """An image generation's base64 `result` is not text: a block rule lets it through,
    while a key in the same answer's web search sources is still redacted."""
    gw, upstream = setup
    upstream.answer = lambda body: response("completed", [IMAGE])
    answer = await (await gw.openai()).responses.create(model="gpt-4o-mini", input="hi")
    assert answer.output[0].model_dump()["result"] == IMAGE["result"]
    upstream.answer = lambda body: response("completed", [SEARCH, IMAGE])
    answer = await (await gw.openai("hush")).responses.create(model="gpt-4o-mini", input="hi")
    dumped = [item.model_dump(warnings=False) for item in answer.output]
    assert dumped[0]["action"]["sources"][0]["url"] == f"https://example.com/{MARK}"
    assert dumped[1]["result"] == IMAGE["result"]
