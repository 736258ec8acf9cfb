"""LitellmProvider's stream end when keep-alives follow a finished Anthropic answer: pings and
SSE comments between `message_stop` and the upstream's close leave a whole answer (the
openai-compatible provider once failed there, 7078621); without a finish they do not make
one either."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.providers.base import UpstreamFailure
from gateway.providers.litellm_adapter import LitellmProvider
from tests.integration.providers.litellm_upstreams import (
    API_KEY,
    LITELLM_WARNINGS,
    read_sse,
    upstream_call,
)
from tests.support.aiohttp_app import serving

pytestmark = LITELLM_WARNINGS


def sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


MESSAGE: dict[str, Any] = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
           "content": [], "stop_reason": None, "stop_sequence": None,
           "usage": {"input_tokens": 12, "output_tokens": 1}}  # fmt: skip
ANSWER = [
    sse("message_start", {"type": "message_start", "message": MESSAGE}),
    sse("content_block_start", {"type": "content_block_start", "index": 0,
                                "content_block": {"type": "text", "text": ""}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                "delta": {"type": "text_delta", "text": "Hello"}}),
]  # fmt: skip
FINISH = [
    sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    sse("message_delta", {"type": "message_delta",
                          "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                          "usage": {"output_tokens": 3}}),
    sse("message_stop", {"type": "message_stop"}),
]  # fmt: skip
KEEP_ALIVES = [sse("ping", {"type": "ping"}), b": keep-alive\n\n"] * 4


@asynccontextmanager
async def anthropic(writes: list[bytes]) -> AsyncIterator[LitellmProvider]:
    """A provider on an Anthropic that sends `writes` (each its own write), then closes."""

    async def messages(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for data in writes:
            await response.write(data)
            await asyncio.sleep(0.01)
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    async with serving(app) as origin:
        provider = LitellmProvider("anthropic-test", "anthropic", origin, API_KEY, {})
        try:
            yield provider
        finally:
            await provider.close()


CALL = upstream_call("chat", "claude-test", {"messages": [{"role": "user", "content": "hi"}]},
                     is_stream=True)  # fmt: skip


async def test_keep_alives_after_a_finished_answer_leave_it_whole() -> None:
    async with anthropic(ANSWER + FINISH + KEEP_ALIVES) as provider:
        chunks = await read_sse(await provider.open_stream(CALL))  # [DONE] last, no error
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


async def test_keep_alives_after_an_unfinished_answer_do_not_finish_it() -> None:
    async with anthropic(ANSWER + KEEP_ALIVES) as provider:
        events = await provider.open_stream(CALL)
        received = []
        with pytest.raises(UpstreamFailure):
            async for event in events:
                received.append(event)
    assert received and b"data: [DONE]\n\n" not in received
