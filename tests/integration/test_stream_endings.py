"""How an upstream's stream ends, as the client sees it through the gateway (black-box
probe of the wire): a chat answer that finished but was never followed by `[DONE]` is a
success with the `[DONE]` added; an upstream's own error event is the only one the client
gets; a gateway error on a Responses stream is OpenAI's `error` event."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator

import httpx2 as httpx
import openai
import orjson
import pytest
from aiohttp import web

from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  m:
    deployments: [{{provider: up, model: upstream-model}}]
teams:
  demo: {{models: ["*"]}}
"""


def chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "upstream-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


USAGE = b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"upstream-model","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}\n\n'
CHAT_ERROR = (
    b'data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}}\n\n'
)
RESPONSES_ERROR = b'event: error\ndata: {"type":"error","code":"server_error","message":"boom","param":null,"sequence_number":2}\n\n'
RESPONSES_START = (
    b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
    b'"response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}}\n\n'
)
RESPONSES_DELTA = (
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"sequence_number":1,"delta":"Hel"}\n\n'
)
RESPONSES_FAILED = (
    b'event: response.failed\ndata: {"type":"response.failed","sequence_number":3,'
    b'"response":{"id":"resp_1","object":"response","status":"failed","output":[],'
    b'"error":{"code":"server_error","message":"boom"}}}\n\n'
)

DONE = b"data: [DONE]\n\n"
# A good last chunk that spells `"error": null` (the SDK reads it as an answer).
ERROR_NULL_LAST = (
    b'data: {"error":null,"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
    b'"model":"upstream-model","choices":[{"index":0,"delta":{"content":"!"},'
    b'"finish_reason":"stop"}]}\n\n'
)
# OpenRouter's mid-stream error: a chunk with `error` and a choice finished on "error".
OPENROUTER_ERROR = (
    b'data: {"id":"gen-1","object":"chat.completion.chunk","created":1,"model":"upstream-model",'
    b'"error":{"code":"server_error","message":"Provider disconnected"},'
    b'"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}\n\n'
)

SCRIPTS = {
    "finished_no_done": [chunk("Hello"), chunk(" world"), chunk(None, "stop"), USAGE],
    "finished_no_done_no_usage": [chunk("Hello"), chunk(None, "stop")],
    "unfinished_no_done": [chunk("Hello"), chunk(" wor")],
    "chat_error_then_close": [chunk("Hello"), CHAT_ERROR],
    "responses_error_then_close": [RESPONSES_START, RESPONSES_ERROR],
    "responses_failed_then_close": [RESPONSES_START, RESPONSES_DELTA, RESPONSES_FAILED],
    "responses_failed_and_error": [RESPONSES_START, RESPONSES_FAILED, RESPONSES_ERROR],
    "chat_error_then_close_": [chunk("Hello"), CHAT_ERROR],
    "responses_cut": [RESPONSES_START, RESPONSES_DELTA],
    "chat_error_then_done": [chunk("Hello"), CHAT_ERROR, b"data: [DONE]\n\n"],
    "chat_error_and_done": [chunk("Hello"), CHAT_ERROR + b"data: [DONE]\n\n"],
    "chat_done": [chunk("Hello"), chunk(None, "stop") + b"data: [DONE]\n\n"],
    "error_null_last": [chunk("Hello"), ERROR_NULL_LAST, b"data: [DONE]\n\n"],
    "openrouter_error_then_done": [chunk("Hello"), OPENROUTER_ERROR, b"data: [DONE]\n\n"],
    "openrouter_error_then_close": [chunk("Hello"), OPENROUTER_ERROR],
    "spaced_error_then_done": [chunk("Hello"), b'data:  {"error" : {"message": "x"}}\n\n', DONE],
    "brace_space_error_then_done": [
        chunk("Hello"),
        b'data: { "error": {"message": "x"}}\n\n',
        DONE,
    ],
    "error_ping_done": [chunk("Hello"), CHAT_ERROR, b": ping\n\n", DONE],
    # Finished, then keep-alive comments (and an Azure filter chunk), then a close.
    "finished_pings_no_done": [chunk("Hello"), chunk(None, "stop"), USAGE, *[b": ka\n\n"] * 4],
    "finished_filter_pings_no_done": [
        chunk("Hello"),
        chunk(None, "stop"),
        b'data: {"id":"","object":"","created":0,"model":"","choices":[],'
        b'"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}\n\n',
        USAGE,
        *[b": ka\n\n"] * 4,
    ],
    "responses_completed_pings": [
        RESPONSES_START,
        RESPONSES_DELTA,
        b'event: response.completed\ndata: {"type":"response.completed","sequence_number":2,'
        b'"response":{"id":"resp_1","object":"response","status":"completed","output":[]}}\n\n',
        *[b": ka\n\n"] * 5,
    ],
    "error_usage_done": [chunk("Hello"), CHAT_ERROR, USAGE, DONE],
}


@contextlib.asynccontextmanager
async def scripted_upstream(script: str, *, pause_s: float = 0.0) -> AsyncIterator[str]:
    """Serves the script's writes, `pause_s` apart."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in SCRIPTS[script]:
            await response.write(event)
            if pause_s:
                await asyncio.sleep(pause_s)
        return response  # closes without [DONE]

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    app.router.add_post("/v1/responses", stream)
    async with serving(app) as origin:
        yield f"{origin}/v1"


async def raw_events(gw, path: str, body: dict) -> list[bytes]:
    headers = {"authorization": f"Bearer {await gw.token()}"}
    async with httpx.AsyncClient(base_url=gw.origin, timeout=10) as http:
        reply = await http.post(path, json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    return [event for event in reply.content.split(b"\n\n") if event.strip()]


CHAT = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("script", ["finished_no_done", "finished_no_done_no_usage"])
async def test_a_finished_chat_stream_without_done_is_a_whole_answer(tmp_path, script):
    async with scripted_upstream(script) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            client = await gw.openai()
            stream = await client.chat.completions.create(
                **CHAT, stream_options={"include_usage": True}
            )
            chunks = [c async for c in stream]  # an error event would raise here
            events = await raw_events(gw, "/v1/chat/completions", CHAT)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert events[-1] == b"data: [DONE]"
    assert not any(b'"error"' in event for event in events)


@pytest.mark.parametrize("script", ["finished_pings_no_done", "finished_filter_pings_no_done"])
async def test_comments_after_a_finished_answer_do_not_break_it(tmp_path, script):
    """Keep-alive comments (each its own read) between the finished answer and the
    upstream's close: still a whole answer, `[DONE]` added, booked 200."""
    async with scripted_upstream(script, pause_s=0.02) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            client = await gw.openai()
            stream = await client.chat.completions.create(**CHAT)
            chunks = [c async for c in stream]  # an error event would raise here
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        rows = db.execute("SELECT status, outcome FROM usage_ledger").fetchall()
    assert rows == [(200, "ok")]


async def test_comments_after_a_completed_responses_stream_do_not_break_it(tmp_path):
    body = {"model": "m", "stream": True, "input": "hi"}
    async with scripted_upstream("responses_completed_pings", pause_s=0.02) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            client = await gw.openai()
            seen = [event async for event in await client.responses.create(**body)]
    assert [e.type for e in seen][-1] == "response.completed"
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        rows = db.execute("SELECT status, outcome FROM usage_ledger").fetchall()
    assert rows == [(200, "ok")]


async def test_an_unfinished_chat_stream_without_done_is_still_a_broken_one(tmp_path):
    async with scripted_upstream("unfinished_no_done") as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            client = await gw.openai()
            stream = await client.chat.completions.create(**CHAT)
            with pytest.raises(openai.APIError, match="failed mid-stream"):
                _ = [c async for c in stream]


async def test_the_upstreams_own_error_event_is_the_only_one(tmp_path):
    async with scripted_upstream("chat_error_then_close") as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            events = await raw_events(gw, "/v1/chat/completions", CHAT)
    errors = [event for event in events if b'"error"' in event]
    assert errors == [CHAT_ERROR.strip()]


async def test_a_responses_stream_ends_with_openais_error_event_once(tmp_path):
    body = {"model": "m", "stream": True, "input": "hi"}
    async with scripted_upstream("responses_error_then_close") as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            events = await raw_events(gw, "/v1/responses", body)
            client = await gw.openai()
            seen = [event async for event in await client.responses.create(**body)]
    assert [event for event in events if b"error" in event] == [RESPONSES_ERROR.strip()]
    assert [event.type for event in seen] == ["response.created", "error"]


@pytest.mark.parametrize(
    ("script", "path"),
    [
        ("chat_error_then_close_", "/v1/chat/completions"),
        ("responses_error_then_close", "/v1/responses"),
        ("responses_failed_then_close", "/v1/responses"),
        ("responses_failed_and_error", "/v1/responses"),
    ],
)
async def test_a_stream_the_upstream_ended_on_its_failure_is_booked_as_one(tmp_path, script, path):
    """A Responses `response.failed` (or `error`) mid-stream is booked as chat's error event
    is: the row carries the error's status, not 200 ok; the client's stream is the
    upstream's as it came, up to its first failure event (nothing after it)."""
    body = {**CHAT, "input": "hi"} if path == "/v1/responses" else CHAT
    async with scripted_upstream(script) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            events = await raw_events(gw, path, body)
    failures = (CHAT_ERROR, RESPONSES_ERROR, RESPONSES_FAILED)
    first_failure = next(at for at, event in enumerate(SCRIPTS[script]) if event in failures)
    sent = SCRIPTS[script][: first_failure + 1]  # Responses ids rewritten; no event added
    assert [e.split(b"\n")[0] for e in events] == [e.split(b"\n")[0] for e in sent]
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        rows = db.execute("SELECT status, outcome, error_code FROM usage_ledger").fetchall()
    assert rows == [(502, "upstream_error", "upstream_unavailable")]


async def test_the_gateways_own_responses_error_event_follows_the_last_sequence_number(tmp_path):
    """A Responses stream the upstream cuts after event 1 ends with the gateway's `error`
    event numbered 2: every Responses event carries `sequence_number` (a required int in
    the SDK's ResponseErrorEvent)."""
    body = {"model": "m", "stream": True, "input": "hi"}
    async with scripted_upstream("responses_cut") as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            events = await raw_events(gw, "/v1/responses", body)
            client = await gw.openai()
            seen = [event async for event in await client.responses.create(**body)]
    error = orjson.loads(events[-1].split(b"data: ", 1)[1])
    assert error["type"] == "error" and error["code"] == "upstream_unavailable"
    assert error["sequence_number"] == 2
    assert [(e.type, e.sequence_number) for e in seen] == [
        ("response.created", 0),
        ("response.output_text.delta", 1),
        ("error", 2),
    ]


@pytest.mark.parametrize(
    ("script", "row"),
    [
        ("chat_error_then_done", (502, "upstream_error", "upstream_unavailable")),
        ("chat_error_and_done", (502, "upstream_error", "upstream_unavailable")),
        ("chat_done", (200, "ok", None)),
    ],
)
async def test_an_error_event_followed_by_done_is_booked_as_a_failure(tmp_path, script, row):
    """An upstream's error event then `[DONE]` (apart or in one read) is booked as its error
    event then a close is: the client got the upstream's error; `[DONE]` does not make it
    a success. A finished answer then `[DONE]` stays 200 ok."""
    async with scripted_upstream(script) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            events = await raw_events(gw, "/v1/chat/completions", CHAT)
    assert [e for e in events if b'"error"' in e] == ([CHAT_ERROR.strip()] if row[0] == 502 else [])
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        rows = db.execute("SELECT status, outcome, error_code FROM usage_ledger").fetchall()
    assert rows == [row]


FAILED = (502, "upstream_error", "upstream_unavailable")


@pytest.mark.parametrize(
    ("script", "row"),
    [
        ("error_null_last", (200, "ok", None)),
        ("openrouter_error_then_done", FAILED),
        ("openrouter_error_then_close", FAILED),
        ("spaced_error_then_done", FAILED),
        ("brace_space_error_then_done", FAILED),
        ("error_ping_done", FAILED),
        ("error_usage_done", FAILED),
    ],
)
async def test_a_stream_is_booked_failed_exactly_when_the_sdk_raises_at_its_end(
    tmp_path, script, row
):
    """The records say a stream failed when, and only when, the SDK raised at its ending
    (a data event whose JSON has a truthy `error`, then only comments, usage or [DONE]).
    Each write is a read of its own (`pause_s`)."""
    async with scripted_upstream(script, pause_s=0.05) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            client = await gw.openai()
            raised = None
            try:
                stream = await client.chat.completions.create(**CHAT)
                text = "".join(
                    [c.choices[0].delta.content or "" async for c in stream if c.choices]
                )
            except openai.APIError as error:
                raised = error
            events = await raw_events(gw, "/v1/chat/completions", CHAT)
    assert (raised is not None) == (row is FAILED)
    if raised is None:
        assert text == "Hello!"
    assert len([e for e in events if b'"error":{' in e or b'"error" : {' in e]) <= 1  # no second
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        rows = db.execute("SELECT status, outcome, error_code FROM usage_ledger").fetchall()
    assert rows == [row, row]


TWO_DEPLOYMENTS = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
  other: {{type: openai-compatible, api_base: "{base}"}}
models:
  m:
    deployments:
      - {{provider: up, model: upstream-model}}
      - {{provider: other, model: other-model, priority: 2}}
    routing: {{failure_threshold: 1, cooldown_s: 60}}
teams:
  demo: {{models: ["*"]}}
"""


@pytest.mark.parametrize("script", ["chat_error_then_done", "chat_error_then_close"])
async def test_an_sdk_that_hangs_up_at_the_upstreams_error_event_books_the_upstreams_failure(
    tmp_path, script
):
    """The SDK raises at the upstream's error event and closes at once, before the upstream's
    [DONE] or close: booked 502 upstream_unavailable against the deployment (which cools
    down), not 499 client_disconnected."""
    async with scripted_upstream(script, pause_s=0.3) as base:
        async with running_gateway(tmp_path, TWO_DEPLOYMENTS.format(base=base)) as gw:
            client = await gw.openai()
            stream = await client.chat.completions.create(**CHAT)
            with pytest.raises(openai.APIError, match="boom"):
                _ = [c async for c in stream]
            await asyncio.sleep(0.5)  # the upstream's [DONE] or close comes after the hang-up
            headers = {"authorization": f"Bearer {await gw.token()}"}
            async with httpx.AsyncClient(base_url=gw.origin, timeout=10) as http:
                after = await http.post("/v1/chat/completions", json=CHAT, headers=headers)
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        booked = db.execute(
            "SELECT status, outcome, error_code FROM usage_ledger WHERE deployment = ?",
            ("up/upstream-model",),
        ).fetchall()
    assert booked == [FAILED]
    assert after.headers["x-gateway-deployment"] == "other/other-model"  # `up` cools down
