"""Every text field, over real HTTP: a gateway on 127.0.0.1 in front of an upstream that
answers with logprobs, reasoning and escaped tool arguments; the client's bytes never hold
the redacted address, and the upstream never receives the request's."""

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
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
  blk: {{models: ["*"], guardrails: [keys]}}
guardrails:
  pii:
    rules:
      - {{detector: email, action: redact}}
  keys:
    rules:
      - {{detector: secrets, action: block}}
      - {{detector: credit_card, action: block}}
"""
EMAIL = "bob@example.com"
ESCAPED_ARGS = '{"to": "bob\\u0040example.com"}'
USAGE = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


def logprob(text: str) -> dict[str, Any]:
    entry = {"token": text, "logprob": -0.1, "bytes": list(text.encode())}
    return {**entry, "top_logprobs": [entry]}


@dataclass
class Upstream:
    """Answers each request with `answer(body)`: a dict (JSON) or a list of SSE events."""

    answer: Callable[[dict[str, Any]], Any] = lambda body: {}
    bodies: list[dict[str, Any]] = field(default_factory=list)


def chat_answer(message: dict[str, Any], logprobs: Any = None) -> dict[str, Any]:
    choice = {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": "stop"}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "upstream-chat",
        "choices": [choice],
        "usage": USAGE,
    }


def chat_chunks(deltas: list[tuple[dict[str, Any], Any]]) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": d, "logprobs": lp, "finish_reason": None}]}
        for d, lp in deltas
    ]
    end = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    return [*chunks, {**base, "choices": [end]}, {**base, "choices": [], "usage": USAGE}]


@pytest.fixture
async def setup(tmp_path, monkeypatch) -> AsyncIterator[tuple[Any, Upstream, str]]:
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
            await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    app.router.add_post("/v1/completions", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    try:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            yield gw, upstream, await gw.token()
    finally:
        await runner.cleanup()


async def post(http: aiohttp.ClientSession, gw: Any, token: str, route: str, body: Any) -> bytes:
    async with http.post(
        f"{gw.base_url}/{route}",
        json={"model": "gpt-4o-mini", **body},
        headers={"authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 200, await response.text()
        return await response.read()


CHAT = {"messages": [{"role": "user", "content": "hi"}]}


async def test_logprobs_of_a_redacted_answer_do_not_carry_it(setup, http):
    """Whole chat and completions answers, and a chat stream, with logprobs on."""
    gw, upstream, token = setup
    tokens = [logprob("Mail "), logprob("bob@"), logprob("example.com")]
    upstream.answer = lambda body: (
        chat_chunks([({"content": t["token"]}, {"content": [t]}) for t in tokens])
        if body.get("stream")
        else chat_answer({"role": "assistant", "content": "Mail " + EMAIL}, {"content": tokens})
    )
    whole = await post(http, gw, token, "chat/completions", {**CHAT, "logprobs": True})
    assert orjson.loads(whole)["choices"][0]["logprobs"] is None
    streamed = await post(
        http, gw, token, "chat/completions", {**CHAT, "logprobs": True, "stream": True}
    )
    upstream.answer = lambda body: {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "text": "Mail " + EMAIL,
                "logprobs": {
                    "tokens": ["Mail ", "bob@", "example.com"],
                    "top_logprobs": [{"bob@": -1}],
                },
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
    completion = await post(http, gw, token, "completions", {"prompt": "hi", "logprobs": 1})
    for raw in (whole, streamed, completion):
        assert b"[REDACTED:email]" in raw
        assert b"example" not in raw and b"98,111,98,64" not in raw  # no "bob@" as bytes


async def test_reasoning_refusal_and_citations_are_redacted(setup, http):
    gw, upstream, token = setup
    message = {
        "role": "assistant",
        "content": "ok",
        "reasoning_content": "ask " + EMAIL,
        "annotations": [
            {"type": "url_citation", "url_citation": {"title": EMAIL, "url": "mailto:" + EMAIL}}
        ],
        "audio": {"id": "a", "data": "", "expires_at": 1, "transcript": "to " + EMAIL},
    }
    upstream.answer = lambda body: (
        chat_chunks(
            [
                ({"reasoning_content": "ask bob@exa"}, None),
                ({"reasoning_content": "mple.com"}, None),
                ({"refusal": "no bob@"}, None),
                ({"refusal": "example.com"}, None),
                ({"annotations": message["annotations"]}, None),
            ]
        )
        if body.get("stream")
        else chat_answer(message)
    )
    whole = await post(http, gw, token, "chat/completions", CHAT)
    streamed = await post(http, gw, token, "chat/completions", {**CHAT, "stream": True})
    for raw in (whole, streamed):
        assert b"[REDACTED:email]" in raw and b"example" not in raw


async def test_escaped_tool_arguments_are_redacted(setup, http):
    """`bob\\u0040example.com` is an address to the client's JSON reader: redacted."""
    gw, upstream, token = setup
    call = {"id": "c1", "type": "function", "function": {"name": "send", "arguments": ESCAPED_ARGS}}
    half = len(ESCAPED_ARGS) // 2 + 3  # inside the escape
    upstream.answer = lambda body: (
        chat_chunks(
            [
                (
                    {
                        "tool_calls": [
                            {"index": 0, **call, "function": {"name": "send", "arguments": ""}}
                        ]
                    },
                    None,
                ),
                (
                    {"tool_calls": [{"index": 0, "function": {"arguments": ESCAPED_ARGS[:half]}}]},
                    None,
                ),
                (
                    {"tool_calls": [{"index": 0, "function": {"arguments": ESCAPED_ARGS[half:]}}]},
                    None,
                ),
            ]
        )
        if body.get("stream")
        else chat_answer({"role": "assistant", "content": None, "tool_calls": [call]})
    )
    whole = orjson.loads(await post(http, gw, token, "chat/completions", CHAT))
    arguments = whole["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert orjson.loads(arguments) == {"to": "[REDACTED:email]"}
    streamed = await post(http, gw, token, "chat/completions", {**CHAT, "stream": True})
    pieces = [
        call["function"].get("arguments") or ""
        for line in streamed.split(b"\n\n")
        if line.startswith(b"data: {")
        for choice in orjson.loads(line[6:])["choices"]
        for call in choice["delta"].get("tool_calls") or ()
    ]
    assert orjson.loads("".join(pieces)) == {"to": "[REDACTED:email]"}


async def test_every_request_text_reaches_the_upstream_redacted(setup, http):
    """prediction, response_format's schema, tool schema values, stop, a message's name,
    escaped tool-call arguments: the upstream sees none of the address."""
    gw, upstream, token = setup
    upstream.answer = lambda body: chat_answer({"role": "assistant", "content": "ok"})
    schema = {
        "type": "object",
        "properties": {"to": {"type": "string", "enum": [EMAIL], "default": EMAIL}},
    }
    body = {
        "messages": [
            {"role": "user", "name": EMAIL, "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "f", "arguments": ESCAPED_ARGS},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c", "content": "sent"},
        ],
        "prediction": {"type": "content", "content": "to " + EMAIL},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "r", "description": "for " + EMAIL, "schema": schema},
        },
        "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
        "stop": [EMAIL],
    }
    await post(http, gw, token, "chat/completions", body)
    sent = orjson.dumps(upstream.bodies[-1])
    assert b"example" not in sent and b"\\\\u0040" not in sent
    assert sent.count(b"[REDACTED:email]") == 9


PROBE_ARGS = '{"note":"key:\\nAKIAIOSFODNN7EXAMPLE\\n","c":"card\\n4111111111111111"}'
QUOTED_ARGS = '{"e":"x\\u0022bob@example.com","f":"y\\nbob@example.com"}'


def tool_call_answer(body: dict[str, Any], arguments: str) -> Any:
    """A tool call with `arguments`, whole or streamed cut inside the first escape."""
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    if not body.get("stream"):
        return chat_answer({"role": "assistant", "content": None, "tool_calls": [call]})
    cut = arguments.index("\\") + 1  # `...k\` | `nAKIA...`
    head = {"index": 0, **call, "function": {"name": "f", "arguments": arguments[:cut]}}
    tail = {"index": 0, "function": {"arguments": arguments[cut:]}}
    return chat_chunks([({"tool_calls": [head]}, None), ({"tool_calls": [tail]}, None)])


def streamed_arguments(raw: bytes) -> str:
    return "".join(
        call["function"].get("arguments") or ""
        for line in raw.split(b"\n\n")
        if line.startswith(b"data: {") and b'"choices"' in line
        for choice in orjson.loads(line[6:])["choices"]
        for call in choice["delta"].get("tool_calls") or ()
    )


async def test_a_secret_right_after_an_escape_in_arguments_is_blocked(setup, http):
    """`key:\\nAKIA...`: the client's reader sees a newline and then the key; blocked
    whole (400) and streamed (an error event, nothing of the key sent), and on input."""
    gw, upstream, _ = setup
    token = await gw.token(team="blk")
    upstream.answer = lambda body: tool_call_answer(body, PROBE_ARGS)
    headers = {"authorization": f"Bearer {token}"}
    url = f"{gw.base_url}/chat/completions"
    async with http.post(url, json={"model": "gpt-4o-mini", **CHAT}, headers=headers) as r:
        assert r.status == 400
        assert (await r.json())["error"]["code"] == "content_policy_violation"
    body = {"model": "gpt-4o-mini", **CHAT, "stream": True}
    async with http.post(url, json=body, headers=headers) as r:
        raw = await r.read()
    assert b"content_policy_violation" in raw and b"AKIA" not in raw
    sent = len(upstream.bodies)
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": PROBE_ARGS}}
    messages = [{"role": "assistant", "content": None, "tool_calls": [call]}]
    async with http.post(
        url, json={"model": "gpt-4o-mini", "messages": messages}, headers=headers
    ) as r:
        assert r.status == 400
    assert len(upstream.bodies) == sent  # never forwarded


async def test_a_redaction_next_to_an_escape_keeps_arguments_valid_json(setup, http):
    """`x\\u0022bob@...`: redacted, whole and streamed, the arguments still parse, with
    the same value and the address redacted; so do the request's, upstream."""
    gw, upstream, token = setup
    expected = {"e": 'x"[REDACTED:email]', "f": "y\n[REDACTED:email]"}
    upstream.answer = lambda body: tool_call_answer(body, QUOTED_ARGS)
    whole = orjson.loads(await post(http, gw, token, "chat/completions", CHAT))
    arguments = whole["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert orjson.loads(arguments) == expected
    streamed = await post(http, gw, token, "chat/completions", {**CHAT, "stream": True})
    assert orjson.loads(streamed_arguments(streamed)) == expected
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": QUOTED_ARGS}}
    messages = [{"role": "assistant", "content": None, "tool_calls": [call]}]
    await post(http, gw, token, "chat/completions", {"messages": messages})
    sent = upstream.bodies[-1]["messages"][0]["tool_calls"][0]["function"]["arguments"]
    assert orjson.loads(sent) == expected
