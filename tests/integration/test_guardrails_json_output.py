"""Output redaction keeps JSON the client parses valid, through the official openai SDK:
tool-call arguments with a card written as a number, and the content of an answer the
request asked to be JSON (chat `response_format`, Responses `text.format`), which is also
read with its escapes decoded, whole and streamed."""

import json
from collections.abc import AsyncIterator, Callable
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
  demo: {{models: ["*"], guardrails: [pii]}}
  blk: {{models: ["*"], guardrails: [mail]}}
guardrails:
  pii:
    output:
      - {{detector: email, action: redact}}
      - {{detector: credit_card, action: redact}}
  mail:
    output:
      - {{detector: email, action: block}}
"""
# What the model writes: the card as a JSON number, the address with its `@` escaped.
PAYMENT = '{"card": 4111111111111111, "email": "bob\\u0040example.com", "n": 2}'
REDACTED = {"card": "[REDACTED:credit_card]", "email": "[REDACTED:email]", "n": 2}
USAGE = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
PIECE_CHARS = 5  # a stream sends the text in pieces this long: cut inside the number
TOOLS = [{"type": "function", "function": {"name": "pay", "parameters": {"type": "object"}}}]
JSON_OBJECT = {"type": "json_object"}
SCHEMA = {"type": "object", "properties": {"card": {"type": "integer"}}}
TEXT_FORMAT = {"format": {"type": "json_schema", "name": "Payment", "schema": SCHEMA}}


def pieces(text: str) -> list[str]:
    return [text[at : at + PIECE_CHARS] for at in range(0, len(text), PIECE_CHARS)]


def chat_answer(body: dict[str, Any], text: str) -> Any:
    """A tool call with `text` as arguments when the request has tools, else `text` as
    content; streamed in pieces when asked."""
    base = {"id": "chatcmpl-1", "created": 1, "model": "upstream-chat"}
    call = {"id": "c1", "type": "function", "function": {"name": "pay", "arguments": text}}
    if not body.get("stream"):
        message = (
            {"role": "assistant", "content": None, "tool_calls": [call]}
            if body.get("tools")
            else {"role": "assistant", "content": text}
        )
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        return {**base, "object": "chat.completion", "choices": [choice], "usage": USAGE}
    deltas: list[dict[str, Any]] = []
    for at, piece in enumerate(pieces(text)):
        if not body.get("tools"):
            deltas.append({"content": piece})
        elif at == 0:
            deltas.append({"tool_calls": [{"index": 0, **call, "function": {"name": "pay"}}]})
            deltas.append({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        else:
            deltas.append({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    chunk = {**base, "object": "chat.completion.chunk"}
    return [
        *({**chunk, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas),
        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**chunk, "choices": [], "usage": USAGE},
    ]


def responses_answer(body: dict[str, Any], text: str) -> Any:
    """A function call with `text` as arguments when the request has tools, else a message
    with `text` as its output text; streamed in pieces when asked."""
    if body.get("tools"):
        item: dict[str, Any] = {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "pay",
            "arguments": text,
            "status": "completed",
        }
        delta_kind, done = "response.function_call_arguments.delta", {"arguments": text}
        done_kind = "response.function_call_arguments.done"
    else:
        part = {"type": "output_text", "text": text, "annotations": []}
        item = {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [part],
        }
        delta_kind, done = "response.output_text.delta", {"text": text, "content_index": 0}
        done_kind = "response.output_text.done"
    response = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": "upstream-chat",
        "status": "completed",
        "output": [item],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 3,
            "output_tokens": 5,
            "total_tokens": 8,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }
    if not body.get("stream"):
        return response
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    at = {"item_id": item["id"], "output_index": 0}
    events = [
        {"type": "response.created", "response": started},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "status": "in_progress"},
        },
        *({"type": delta_kind, **at, "content_index": 0, "delta": piece} for piece in pieces(text)),
        {"type": done_kind, **at, **done},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": response},
    ]
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


@pytest.fixture
async def setup(tmp_path, monkeypatch) -> AsyncIterator[tuple[Any, list[str]]]:
    """The gateway in front of an upstream whose answer's text is `text[0]`."""
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    text = [PAYMENT]

    def handler(answer: Callable[[dict[str, Any], str], Any]) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            reply = answer(body, text[0])
            if isinstance(reply, dict):
                return web.json_response(reply)
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            for event in reply:
                await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
            return response

        return handle

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler(chat_answer))
    app.router.add_post("/v1/responses", handler(responses_answer))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    try:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            yield gw, text
    finally:
        await runner.cleanup()


MESSAGES = [{"role": "user", "content": "pay"}]


async def chat_text(client: openai.AsyncOpenAI, *, stream: bool, **options: Any) -> str:
    """The arguments of the answer's tool call (with `tools`), else its content."""
    if not stream:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, **options
        )
        message = completion.choices[0].message
        return message.tool_calls[0].function.arguments if message.tool_calls else message.content
    text = ""
    async for chunk in await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, **options
    ):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or ():
                text += (call.function and call.function.arguments) or ""
    return text


async def responses_text(client: openai.AsyncOpenAI, *, stream: bool, **options: Any) -> str:
    """The arguments of the answer's function call (with `tools`), else its output text;
    streamed: the deltas joined, checked against the `*.done` events' whole texts."""
    if not stream:
        response = await client.responses.create(model="gpt-4o-mini", input="pay", **options)
        item = response.output[0]
        return item.arguments if item.type == "function_call" else response.output_text
    text, whole = "", []
    async for event in await client.responses.create(
        model="gpt-4o-mini", input="pay", stream=True, **options
    ):
        if event.type in ("response.output_text.delta", "response.function_call_arguments.delta"):
            text += event.delta
        elif event.type == "response.output_text.done":
            whole.append(event.text)
        elif event.type == "response.function_call_arguments.done":
            whole.append(event.arguments)
    assert whole == [text]
    return text


RESPONSES_TOOLS = [{"type": "function", "name": "pay", "parameters": {"type": "object"}}]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_card_written_as_a_number_in_tool_arguments_is_redacted_as_json(setup, stream):
    """Chat tool-call and Responses function-call arguments: the number becomes the marker
    as a JSON string, so the arguments the client gets parse."""
    gw, _ = setup
    client = await gw.openai()
    chat = await chat_text(client, stream=stream, tools=TOOLS)
    assert json.loads(chat) == REDACTED
    answer = await responses_text(client, stream=stream, tools=RESPONSES_TOOLS)
    assert json.loads(answer) == REDACTED


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_content_asked_as_json_is_redacted_as_json(setup, stream):
    """`response_format` json_object (chat) and `text.format` json_schema (Responses): a
    card written as a number and an address with an escaped `@` come redacted, as JSON."""
    gw, _ = setup
    client = await gw.openai()
    chat = await chat_text(client, stream=stream, response_format=JSON_OBJECT)
    assert json.loads(chat) == REDACTED
    answer = await responses_text(client, stream=stream, text=TEXT_FORMAT)
    assert json.loads(answer) == REDACTED


async def test_chat_parse_reads_redacted_json_content(setup):
    """`chat.completions.parse` with a `json_schema` format reads the redacted answer."""
    gw, text = setup
    text[0] = '{"email": "bob\\u0040example.com"}'
    client = await gw.openai()
    schema = {"type": "object", "properties": {"email": {"type": "string"}}}
    completion = await client.chat.completions.parse(
        model="gpt-4o-mini",
        messages=MESSAGES,
        response_format={"type": "json_schema", "json_schema": {"name": "E", "schema": schema}},
    )
    assert json.loads(completion.choices[0].message.content) == {"email": "[REDACTED:email]"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_block_rule_reads_escapes_in_content_asked_as_json(setup, stream):
    """An address spelled with `\\u0040` in JSON content is blocked, as in arguments."""
    gw, text = setup
    text[0] = '{"email": "bob\\u0040example.com"}'
    client = await gw.openai(team="blk")
    if not stream:
        with pytest.raises(openai.BadRequestError) as caught:
            await chat_text(client, stream=False, response_format=JSON_OBJECT)
        assert caught.value.code == "content_policy_violation"
        return
    with pytest.raises(openai.APIError) as caught:
        await chat_text(client, stream=True, response_format=JSON_OBJECT)
    assert "content_policy_violation" in str(caught.value.body)


async def test_content_not_asked_as_json_is_redacted_as_text(setup):
    """Without a JSON format the content is prose: the marker goes in as it is."""
    gw, text = setup
    text[0] = "card 4111111111111111 on file"
    client = await gw.openai()
    for stream in (False, True):
        assert await chat_text(client, stream=stream) == "card [REDACTED:credit_card] on file"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    "card",
    ["4111111111111111E0", "41111111111111110e-1", "4.111111111111111e15", "411111111111111.1E1"],
)
async def test_a_card_written_in_exponent_form_is_redacted(setup, stream, card):
    """The client's JSON reader reads `4111111111111111E0` as the card: so does the scan,
    in tool-call arguments and in content asked as JSON."""
    gw, text = setup
    text[0] = f'{{"card": {card}, "n": 1e2}}'
    client = await gw.openai()
    expected = {"card": "[REDACTED:credit_card]", "n": 100.0}
    assert json.loads(await chat_text(client, stream=stream, tools=TOOLS)) == expected
    answer = await responses_text(client, stream=stream, text=TEXT_FORMAT)
    assert json.loads(answer) == expected
