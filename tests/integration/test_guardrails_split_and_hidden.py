"""Secrets the guardrails once let through, over real HTTP with the official openai SDK:
a key split across a message's text parts, one hidden by invisible characters, and,
in answers, one in a field the output scan did not read or in a streamed choice whose
index is not a plain integer."""

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
guardrails:
  keys:
    input:
      - {{detector: secrets, action: block}}
    output:
      - {{detector: secrets, action: block}}
"""
KEY = "AKIAIOSFODNN7EXAMPLE"
BASE = {"id": "chatcmpl-1", "created": 1, "model": "upstream-chat"}
USAGE = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


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
            return web.json_response(answer)
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


def whole(message: dict[str, Any]) -> dict[str, Any]:
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {**BASE, "object": "chat.completion", "choices": [choice], "usage": USAGE}


def chunk(delta: dict[str, Any], **choice: Any) -> dict[str, Any]:
    body = {"index": 0, "delta": delta, "finish_reason": None, **choice}
    return {**BASE, "object": "chat.completion.chunk", "choices": [body]}


async def streamed_text(client: openai.AsyncOpenAI) -> str:
    """Every string the stream's choices carried, joined, until its end or its error."""
    seen: list[str] = []
    try:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
        async for event in stream:
            seen.append(orjson.dumps(event.model_dump(warnings=False)).decode())
    except openai.APIError as error:
        seen.append(f"error: {error.code} {error}")
    return "".join(seen)


async def test_a_key_split_across_text_parts_is_refused(setup):
    """Two text parts of one message that an upstream joins into the key: 400
    content_policy_violation, and the upstream never sees the request."""
    gw, upstream = setup
    client = await gw.openai()
    content = [
        {"type": "text", "text": "my key is AKIAIOSFO"},
        {"type": "text", "text": "DNN7EXAMPLE"},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": content}]
        )
    assert caught.value.code == "content_policy_violation" and KEY not in str(caught.value)
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(
            model="gpt-4o-mini",
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "AKIAIOSFO"},
                        {"type": "input_text", "text": "DNN7EXAMPLE"},
                    ],
                }
            ],
        )
    assert upstream.bodies == []


@pytest.mark.parametrize(
    "hidden",
    [
        KEY[:4] + chr(0xE0041) + KEY[4:],
        "\u200d".join(KEY),
        KEY[:4] + "\U000e0000" + KEY[4:],
    ],
    ids=ascii,
)
async def test_a_key_with_invisible_characters_inside_is_refused(setup, hidden):
    """A tag character or zero-width joiners inside the key (it shows as the key): 400
    content_policy_violation, nothing upstream."""
    gw, upstream = setup
    client = await gw.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"key: {hidden}"}],
        )
    assert caught.value.code == "content_policy_violation"
    assert upstream.bodies == []


def raw_chunk(index: str, content: str) -> bytes:
    """A chat chunk's data with `index` written as these JSON bytes."""
    choice = f'{{"index":{index},"delta":{{"content":{orjson.dumps(content).decode()}}},"finish_reason":null}}'
    return f'{{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{choice}]}}'.encode()


@pytest.mark.parametrize(
    "pieces",
    [
        [("0", "my key AKIAIOSFO"), ('"0"', "DNN7EXAMPLE then"), ("0", " more")],
        [("0", f"my key {KEY}"), ('"0"', " then"), ("0", "more")],
        [('"0"', f"my key {KEY}"), ('"0"', " more")],
        [("0", "hi "), ("1e400", f"my key {KEY} more")],  # first, it fails the attempt
        [("[0]", f"my key {KEY} more")],
    ],
    ids=["split", "held", "string", "huge", "list"],
)
async def test_a_key_in_a_choice_with_an_odd_index_is_blocked(setup, pieces):
    """A stream whose choice index is spelled "0" (or a number orjson cannot read, or a
    list): the key never reaches the client, whose stream ends with the error."""
    gw, upstream = setup
    upstream.answer = lambda body: [raw_chunk(index, text) for index, text in pieces]
    seen = await streamed_text(await gw.openai())
    assert KEY not in seen and "error: content_policy_violation" in seen


async def test_a_key_in_a_whole_answer_s_thinking_is_blocked(setup):
    """A non-standard `message.thinking` is a text of the answer: the output rule blocks
    it (400 content_policy_violation), and the key never reaches the client."""
    gw, upstream = setup
    message = {"role": "assistant", "content": "done", "thinking": f"the key is {KEY}"}
    upstream.answer = lambda body: whole(message)
    client = await gw.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.code == "content_policy_violation" and KEY not in str(caught.value)


@pytest.mark.parametrize(
    "deltas",
    [
        [{"thinking": "the key is AKIAIOSFO"}, {"thinking": "DNN7EXAMPLE, done"}],
        [
            {"content": [{"type": "text", "text": "key AKIA"}, {"type": "text", "text": "IOSFO"}]},
            {"content": [{"type": "text", "text": "DNN7EXAMPLE ok"}]},
        ],
        [{"reasoning_details": [{"type": "reasoning.text", "text": f"key {KEY}"}]}],
    ],
    ids=["thinking", "content-parts", "reasoning-details"],
)
async def test_a_key_in_a_streamed_field_beside_content_is_blocked(setup, deltas):
    """Streamed `delta.thinking`, content streamed as a list of parts, a provider's own
    structured field: the key never reaches the client, whose stream ends with the error."""
    gw, upstream = setup
    upstream.answer = lambda body: (
        [chunk({"role": "assistant", "content": ""})] + [chunk(delta) for delta in deltas]
    )
    seen = await streamed_text(await gw.openai())
    assert KEY not in seen and "error: content_policy_violation" in seen
