"""Answer texts the output rules once let through, over real HTTP with the official
openai SDK: a key nested deeper than a request may nest, one in a top-level field the
gateway does not know (Perplexity's `citations`, `search_results`) or in a Responses
output item's own key, and a streamed key whose start went out with its choice's
`finish_reason` and whose rest came after."""

import json
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
BASE = {"id": "chatcmpl-1", "created": 1, "model": "upstream-chat"}
USAGE = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
HI = [{"role": "user", "content": "hi"}]


@dataclass
class Upstream:
    """Answers each request with `answer(body)`: a dict (JSON) or SSE events, each a dict
    or the raw bytes of its `data:` line."""

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
            # Python's json: orjson writes no more than 254 levels.
            return web.Response(body=json.dumps(answer), content_type="application/json")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in answer:
            data = event if isinstance(event, bytes) else orjson.dumps(event)
            await response.write(b"data: " + data + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
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


def whole(message: dict[str, Any], **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {**BASE, "object": "chat.completion", "choices": [choice], "usage": USAGE, **extra}


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    body = {"index": 0, "delta": delta, "finish_reason": finish}
    return {**BASE, "object": "chat.completion.chunk", "choices": [body], **extra}


def nested(depth: int, inner: Any) -> Any:
    value = inner
    for level in range(depth):
        value = {"d": value} if level % 2 else [value]
    return value


async def streamed(client: openai.AsyncOpenAI) -> tuple[str, str]:
    """(every event as JSON, joined; every content piece, joined) until the stream's end
    or its error (then noted in the first)."""
    seen: list[str] = []
    content: list[str] = []
    try:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True)
        async for event in stream:
            seen.append(orjson.dumps(event.model_dump(warnings=False)).decode())
            content.extend(c.delta.content or "" for c in event.choices)
    except openai.APIError as error:
        seen.append(f"error: {error.code} {error}")
    return "".join(seen), "".join(content)


async def test_a_key_nested_deeper_than_a_request_may_is_blocked(setup):
    """A whole answer with a provider field nested 300 levels deep, the key at its bottom:
    400 content_policy_violation, the key nowhere in it."""
    gw, upstream = setup
    message = {"role": "assistant", "content": "hi", "extra": nested(300, f"key {KEY}")}
    upstream.answer = lambda body: whole(message)
    client = await gw.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert caught.value.code == "content_policy_violation" and KEY not in str(caught.value)


@pytest.mark.parametrize("team", ["demo", "hush"])
async def test_a_streamed_key_finished_then_continued_never_reaches_the_client(setup, team):
    """The key's start goes out with the choice's `finish_reason`, its rest comes after:
    the rest is dropped, so a client joining every piece never holds the key."""
    gw, upstream = setup
    upstream.answer = lambda body: [
        chunk({"role": "assistant", "content": "my key is "}),
        chunk({"content": KEY[:8]}, "stop"),
        chunk({"content": KEY[8:] + " and more"}),
    ]
    seen, content = await streamed(await gw.openai(team))
    assert KEY not in content and KEY[8:] not in seen


SEARCH = [{"title": "a page", "url": "https://example.com", "snippet": f"the key {KEY}"}]


async def test_a_key_in_an_answer_s_search_results_is_blocked(setup):
    """Perplexity's top-level `citations` and `search_results`: 400
    content_policy_violation, the key nowhere in it."""
    gw, upstream = setup
    message = {"role": "assistant", "content": "hi"}
    upstream.answer = lambda body: whole(message, citations=["x"], search_results=SEARCH)
    client = await gw.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert caught.value.code == "content_policy_violation" and KEY not in str(caught.value)


async def test_a_key_in_an_answer_s_search_results_is_redacted(setup):
    """Under a redact rule the answer arrives with the snippet redacted."""
    gw, upstream = setup
    message = {"role": "assistant", "content": "hi"}
    upstream.answer = lambda body: whole(message, search_results=SEARCH)
    client = await gw.openai("hush")
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
    text = (await raw.http_response.aread()).decode()
    assert KEY not in text and MARK in text


async def test_a_key_in_a_stream_event_s_search_results_never_reaches_the_client(setup):
    """The key in `search_results` of a later chunk: the stream ends with the error."""
    gw, upstream = setup
    upstream.answer = lambda body: [
        chunk({"role": "assistant", "content": "hi "}),
        chunk({"content": "there "}),
        chunk({"content": "more"}, search_results=SEARCH),
    ]
    seen, _ = await streamed(await gw.openai())
    assert KEY not in seen and "error: content_policy_violation" in seen


async def test_a_key_in_a_responses_output_item_s_own_key_is_blocked(setup):
    """A Responses message item with a provider's own key holding the key: 400."""
    gw, upstream = setup
    item = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "hi", "annotations": []}],
        "provider_sources": [{"snippet": f"the key {KEY}"}],
    }
    upstream.answer = lambda body: {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": "upstream-chat",
        "output": [item],
        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
    }
    client = await gw.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="gpt-4o-mini", input="hi")
    assert caught.value.code == "content_policy_violation" and KEY not in str(caught.value)


def response_event(kind: str, number: int, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "sequence_number": number, **fields}


async def test_a_responses_key_split_around_an_annotation_never_reaches_the_client(setup):
    """A Responses stream whose key is split around an annotation event: the held start
    no longer goes out at the annotation, so the key is caught whole and never sent."""
    gw, upstream = setup
    text = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    citation = {"type": "url_citation", "url": "https://example.com", "title": "t"}
    response = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}
    upstream.answer = lambda body: [
        response_event("response.created", 0, response=response),
        response_event("response.output_text.delta", 1, delta="my key " + KEY[:8], **text),
        response_event("response.output_text.annotation.added", 2, annotation=citation, **text),
        response_event("response.output_text.delta", 3, delta=KEY[8:] + " ok", **text),
    ]
    client = await gw.openai()
    deltas: list[str] = []
    try:
        stream = await client.responses.create(model="gpt-4o-mini", input="hi", stream=True)
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
    except openai.APIError:
        pass
    assert KEY[:8] not in "".join(deltas)


async def test_a_key_in_a_responses_delta_event_s_own_field_never_reaches_the_client(setup):
    """A provider's own field on a Responses delta event: the stream ends with the
    error, and no event the client got holds the key."""
    gw, upstream = setup
    text = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    sources = [{"snippet": f"the key {KEY}"}]
    upstream.answer = lambda body: [
        response_event("response.output_text.delta", 0, delta="hi ", **text),
        response_event("response.output_text.delta", 1, delta="there", sources=sources, **text),
    ]
    client = await gw.openai()
    seen: list[str] = []
    try:
        stream = await client.responses.create(model="gpt-4o-mini", input="hi", stream=True)
        async for event in stream:
            seen.append(orjson.dumps(event.model_dump(warnings=False)).decode())
    except openai.APIError as error:
        seen.append(f"error: {error.code}")
    joined = "".join(seen)  # the SDK yields a Responses `error` event, or raises
    assert KEY not in joined and "content_policy_violation" in joined
