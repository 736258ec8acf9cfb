"""Usage reports as odd upstreams send them, through a real gateway: what is charged
and what the ledger row says.

The upstream here answers every chat request with one canned body (a whole answer or
an SSE stream), so a test chooses the exact bytes; rows are read from the SQLite file
after the gateway stopped (its lifespan flushes the writer).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.limits.token_count import count_text
from tests.support.gateway import running_gateway

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  remote:
    deployments: [{{provider: up, model: gpt-4o-mini}}]
    price: {{input_per_mtok: 0.15, output_per_mtok: 0.60}}
teams:
  demo: {{models: ["*"]}}
"""
PROMPT = [{"role": "user", "content": "hello there"}]
HEAD = {"id": "chatcmpl-1", "created": 7, "model": "gpt-4o-mini"}


def whole(message: dict[str, Any], usage: Any) -> bytes:
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}
    body: dict[str, Any] = {**HEAD, "object": "chat.completion", "choices": [choice]}
    if usage is not ...:
        body["usage"] = usage
    return orjson.dumps(body)


def stream(deltas: list[dict[str, Any]], usage: Any) -> bytes:
    """A chat stream of `deltas`, then a usage chunk unless `usage` is ..."""
    events = [
        {**HEAD, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d}]}
        for d in deltas
    ]
    if usage is not ...:
        events.append({**HEAD, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    data = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    return data + b"data: [DONE]\n\n"


@asynccontextmanager
async def canned_upstream(body: bytes, *, is_stream: bool) -> AsyncIterator[str]:
    """An OpenAI-compatible upstream on 127.0.0.1:0 answering every chat call with `body`."""

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        kind = "text/event-stream" if is_stream else "application/json"
        return web.Response(body=body, content_type=kind)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def ledger_row(tmp_path: Path) -> dict[str, Any]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.row_factory = sqlite3.Row
        (row,) = [dict(r) for r in db.execute("SELECT * FROM usage_ledger")]
    return row


async def whole_answer(tmp_path: Path, body: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """The ledger row and the response headers of one whole chat answer."""
    async with canned_upstream(body, is_stream=False) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            client = await gw.openai()
            raw = await client.chat.completions.with_raw_response.create(
                model="remote", messages=PROMPT
            )
            headers = dict(raw.headers)
    return ledger_row(tmp_path), headers


async def streamed(tmp_path: Path, body: bytes) -> dict[str, Any]:
    """The ledger row of one chat stream, read to its end with the openai SDK."""
    async with canned_upstream(body, is_stream=True) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            client = await gw.openai()
            chunks = await client.chat.completions.create(
                model="remote", messages=PROMPT, stream=True
            )
            [c async for c in chunks]
    return ledger_row(tmp_path)


def usd(input_tokens: int, output_tokens: int) -> Decimal:
    return (Decimal("0.15") * input_tokens + Decimal("0.60") * output_tokens) / 10**6


FLOATS = {"prompt_tokens": 10.0, "completion_tokens": 5000.0, "total_tokens": 5010.0}
STRINGS = {"prompt_tokens": "10", "completion_tokens": "5000", "total_tokens": "5010"}


@pytest.mark.parametrize("usage", [FLOATS, STRINGS], ids=["floats", "strings"])
async def test_counts_sent_as_floats_or_strings_are_charged_at_their_value(tmp_path, usage):
    """10.0 or "10" tokens cost what 10 tokens cost, and the row says it is reported."""
    row, headers = await whole_answer(tmp_path, whole({"content": "Hi"}, usage))
    assert (row["input_tokens"], row["output_tokens"]) == (10, 5000)
    assert row["tokens_estimated"] == 0
    assert Decimal(headers["x-gateway-cost-usd"]) == usd(10, 5000)


@pytest.mark.parametrize("usage", [FLOATS, STRINGS], ids=["floats", "strings"])
async def test_a_stream_s_counts_sent_as_floats_or_strings_are_charged(tmp_path, usage):
    row = await streamed(tmp_path, stream([{"content": "Hi"}], usage))
    assert (row["input_tokens"], row["output_tokens"]) == (10, 5000)
    assert row["tokens_estimated"] == 0


UNUSABLE = [
    {"prompt_tokens": 10, "completion_tokens": "lots", "total_tokens": 5010},
    {"prompt_tokens": 10.5, "completion_tokens": 5000, "total_tokens": 5010.5},
    {"prompt_tokens": 10, "completion_tokens": -5000},
    {"prompt_tokens": True, "completion_tokens": 5000},
    {"prompt_tokens": 10, "total_tokens": 5010},
]
ANSWER = "one two three four five six seven eight"


@pytest.mark.parametrize("usage", UNUSABLE)
async def test_an_unusable_report_is_counted_by_the_gateway_and_marked_estimated(tmp_path, usage):
    """As with no report at all: the answer's tokens are counted, never charged as 0."""
    row, headers = await whole_answer(tmp_path, whole({"content": ANSWER}, usage))
    assert row["tokens_estimated"] == 1
    assert row["output_tokens"] == count_text(ANSWER, "gpt-4o-mini")
    assert row["input_tokens"] > 0
    assert headers["x-gateway-tokens-estimated"] == "true"
    assert Decimal(headers["x-gateway-cost-usd"]) == usd(row["input_tokens"], row["output_tokens"])


@pytest.mark.parametrize("usage", UNUSABLE)
async def test_a_stream_s_unusable_report_is_counted_and_marked_estimated(tmp_path, usage):
    pieces = [word + " " for word in ANSWER.split()]
    row = await streamed(tmp_path, stream([{"content": p} for p in pieces], usage))
    assert row["tokens_estimated"] == 1
    assert row["output_tokens"] == count_text("".join(pieces), "gpt-4o-mini")
    assert row["input_tokens"] > 0


REASONING = "First I weigh the question, then I decide how to answer it."
ARGUMENTS = '{"city": "Paris", "unit": "celsius"}'


async def test_a_stream_without_usage_charges_reasoning_refusals_and_legacy_calls(tmp_path):
    """vLLM/DeepSeek reasoning deltas, a refusal and a legacy function_call are output."""
    deltas: list[dict[str, Any]] = [
        {"role": "assistant", "reasoning_content": word + " "} for word in REASONING.split()
    ]
    deltas += [{"reasoning": "Newer vLLM spells it so."}, {"refusal": "I can't share that."}]
    deltas += [{"function_call": {"name": "get_weather", "arguments": ""}}]
    deltas += [{"function_call": {"arguments": ARGUMENTS[:9]}}]
    deltas += [{"function_call": {"arguments": ARGUMENTS[9:]}}]
    row = await streamed(tmp_path, stream(deltas, ...))
    generated = "".join(w + " " for w in REASONING.split())
    generated += "Newer vLLM spells it so.I can't share that.get_weather" + ARGUMENTS
    assert row["tokens_estimated"] == 1
    assert row["output_tokens"] == count_text(generated, "gpt-4o-mini") > 30


async def test_a_whole_answer_without_usage_charges_reasoning_refusals_and_legacy_calls(
    tmp_path,
):
    message = {
        "content": None,
        "reasoning_content": REASONING,
        "refusal": "I can't share that.",
        "function_call": {"name": "get_weather", "arguments": ARGUMENTS},
    }
    row, headers = await whole_answer(tmp_path, whole(message, ...))
    generated = REASONING + "I can't share that.get_weather" + ARGUMENTS
    assert row["tokens_estimated"] == 1
    assert row["output_tokens"] == count_text(generated, "gpt-4o-mini") > 30
    assert Decimal(headers["x-gateway-cost-usd"]) == usd(row["input_tokens"], row["output_tokens"])
