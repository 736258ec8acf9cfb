"""Upstream streams whose lines end in a lone CR, or in a mix of CR, LF and CRLF (all three
are SSE line ends), reach the client through the gateway on every streaming route, each
event as soon as it has ended (black-box probe of the wire, the openai SDK as the client)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.support.aiohttp_app import serving
from tests.support.gateway import RunningGateway, running_gateway

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  m:
    deployments: [{{provider: up, model: upstream-model}}]
teams:
  demo: {{models: ["*"]}}
"""
USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def event(payload: dict[str, object], name: str | None = None) -> bytes:
    """One event with LF line ends (cr_only and mixed rewrite them)."""
    head = b"" if name is None else b"event: " + name.encode() + b"\n"
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def chunk(kind: str, choices: list[dict[str, object]], **more: object) -> bytes:
    head = {"id": "c1", "object": kind, "created": 1, "model": "upstream-model"}
    return event({**head, "choices": choices, **more})


def chat(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    return chunk("chat.completion.chunk", [{"index": 0, "delta": delta, "finish_reason": finish}])


def text(piece: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish}
    return chunk("text_completion", [choice])


def responses() -> list[bytes]:
    answer = {"id": "resp_1", "object": "response", "created_at": 1, "model": "upstream-model"}
    started = {**answer, "status": "in_progress", "output": []}
    usage = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
    done = {**answer, "status": "completed", "output": [], "usage": usage}
    delta = {"item_id": "m1", "output_index": 0, "content_index": 0, "delta": "Hello"}
    steps: list[tuple[str, dict[str, object]]] = [
        ("response.created", {"response": started}),
        ("response.output_text.delta", delta),
        ("response.completed", {"response": done}),
    ]
    return [
        event({"type": t, "sequence_number": n, **rest}, t) for n, (t, rest) in enumerate(steps)
    ]


DONE = b"data: [DONE]\n\n"
CHAT = [
    chat("Hel"),
    b": keep-alive\n\n",
    chat("lo"),
    chat(None, "stop"),
    chunk("chat.completion.chunk", [], usage=USAGE),
    DONE,
]
TEXT = [text("Hel"), text("lo", "stop"), chunk("text_completion", [], usage=USAGE), DONE]


def cr_only(raw: bytes) -> bytes:
    return raw.replace(b"\n", b"\r")


def mixed(raw: bytes) -> bytes:
    """Line ends taking turns: CR, CRLF, LF (a CR is never followed by an LF line end)."""
    out, endings = b"", (b"\r", b"\r\n", b"\n")
    for at, line in enumerate(raw.split(b"\n")[:-1]):
        out += line + endings[at % 3]
    return out


@contextlib.asynccontextmanager
async def upstream(
    writes: list[bytes], before: Callable[[int], Awaitable[None]] | None = None
) -> AsyncIterator[str]:
    """Serves `writes` on every streaming route, one write each; `before(i)` is awaited
    before write i when given."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for at, data in enumerate(writes):
            if before is not None:
                await before(at)
            await response.write(data)
            await asyncio.sleep(0.005)
        return response

    app = web.Application()
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses"):
        app.router.add_post(path, stream)
    async with serving(app) as origin:
        yield f"{origin}/v1"


def ledger(tmp_path: Path) -> list[tuple[int, str, int, int]]:
    """Each request's status, outcome and output tokens, and whether they were counted
    here (1) rather than read from the upstream's usage (0)."""
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        query = "SELECT status, outcome, output_tokens, tokens_estimated FROM usage_ledger"
        return db.execute(query).fetchall()


async def chat_text(gw: RunningGateway, on_chunk: Callable[[], object] = lambda: None) -> str:
    """The streamed answer's text; `on_chunk()` is called as each chunk arrives."""
    client = await gw.openai()
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    pieces = []
    async for chunk in await client.chat.completions.create(
        model="m", messages=messages, stream=True
    ):
        pieces.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
        on_chunk()
    return "".join(pieces)


async def completion_text(gw: RunningGateway) -> str:
    client = await gw.openai()
    stream = await client.completions.create(model="m", prompt="hi", stream=True)
    return "".join([c.choices[0].text async for c in stream if c.choices])


async def responses_types(gw: RunningGateway) -> str:
    client = await gw.openai()
    stream = await client.responses.create(model="m", input="hi", stream=True)
    return " ".join([e.type async for e in stream])


ROUTES: dict[str, tuple[list[bytes], Callable[[RunningGateway], Awaitable[str]], str]] = {
    "chat": (CHAT, chat_text, "Hello"),
    "completions": (TEXT, completion_text, "Hello"),
    "responses": (
        responses(),
        responses_types,
        "response.created response.output_text.delta response.completed",
    ),
}


@pytest.mark.parametrize("route", ROUTES)
async def test_every_route_reads_a_cr_only_stream(tmp_path: Path, route: str) -> None:
    events, read, expected = ROUTES[route]
    async with upstream([cr_only(e) for e in events]) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            assert await read(gw) == expected
    assert ledger(tmp_path) == [(200, "ok", 3, 0)]


async def test_mixed_line_ends_and_crlfs_split_across_reads_are_read_alike(tmp_path: Path) -> None:
    """Mixed line ends, every CRLF split across two writes (two reads): its LF is the end
    of the same line, not an empty line of its own (a stray event end)."""
    wire = mixed(b"".join(CHAT))
    reads = [part + b"\r" for part in wire.split(b"\r")]
    reads[-1] = reads[-1].removesuffix(b"\r")
    assert sum(read.startswith(b"\n") for read in reads) == 4  # CRLFs split
    async with upstream(reads) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            assert await chat_text(gw) == "Hello"
    assert ledger(tmp_path) == [(200, "ok", 3, 0)]


async def test_a_cr_only_event_reaches_the_client_before_the_next_is_written(
    tmp_path: Path,
) -> None:
    """The upstream writes the second event only once the client holds the first: an
    event that ends in CR CR must leave at once, not wait for the next read."""
    first_seen = asyncio.Event()

    async def before(at: int) -> None:
        if at == 1:
            await asyncio.wait_for(first_seen.wait(), 5)

    async with upstream([cr_only(e) for e in CHAT], before) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            assert await chat_text(gw, first_seen.set) == "Hello"
    assert ledger(tmp_path) == [(200, "ok", 3, 0)]
