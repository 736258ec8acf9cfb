"""A replayed stream, as the official openai SDK reads it over real HTTP; a real
upstream's stream, assembled into the whole answer it sends unstreamed."""

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from gateway.cache.replay import StreamAssembler, replay
from gateway.sse import events_of
from tests.support.upstream import MockUpstream

TOOLS_ANSWER: dict[str, Any] = {
    "id": "chatcmpl-7",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz":"CET"}'},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 20},
}
TEXT_ANSWER: dict[str, Any] = {
    "id": "cmpl-7",
    "object": "text_completion",
    "created": 1700000000,
    "model": "gpt-3.5-turbo-instruct",
    "choices": [
        {"text": "Once upon a time", "index": 0, "logprobs": None, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6},
}
WEATHER_TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("get_weather", "get_time")
]


@pytest.fixture
async def replaying() -> AsyncIterator[str]:
    """A server on 127.0.0.1 that answers each endpoint with the replay of a stored answer."""

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        endpoint = "chat" if request.path.endswith("chat/completions") else "completions"
        stored = TOOLS_ANSWER if endpoint == "chat" else TEXT_ANSWER
        options = body.get("stream_options") or {}
        data = replay(
            endpoint, orjson.dumps(stored), include_usage=options.get("include_usage") is True
        )
        return web.Response(body=data, content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    app.router.add_post("/v1/completions", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


async def test_the_sdk_reads_a_replayed_chat_stream_with_tool_calls(replaying: str) -> None:
    """The SDK's stream helper rebuilds the stored answer: content, both tool calls, usage."""
    client = openai.AsyncOpenAI(base_url=replaying, api_key="unused")
    async with client.chat.completions.stream(
        model="chat",
        messages=[{"role": "user", "content": "weather?"}],
        tools=WEATHER_TOOLS,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    ) as stream:
        final = await stream.get_final_completion()
    await client.close()
    message = final.choices[0].message
    assert message.content == "Checking."
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []] == [
        ("call_1", "get_weather", '{"city":"Paris"}'),
        ("call_2", "get_time", '{"tz":"CET"}'),
    ]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.total_tokens == 20


async def test_the_sdk_sees_no_usage_chunk_unless_asked(replaying: str) -> None:
    client = openai.AsyncOpenAI(base_url=replaying, api_key="unused")
    chunks = [
        chunk
        async for chunk in await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    ]
    await client.close()
    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_the_sdk_reads_a_replayed_completions_stream(replaying: str) -> None:
    client = openai.AsyncOpenAI(base_url=replaying, api_key="unused")
    chunks = [
        chunk
        async for chunk in await client.completions.create(
            model="instruct",
            prompt="Tell",
            stream=True,
            stream_options={"include_usage": True},
        )
    ]
    await client.close()
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Once upon a time"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
async def test_a_real_stream_assembles_into_the_unstreamed_answer(
    endpoint: str, http: aiohttp.ClientSession
) -> None:
    """The mock upstream's stream, assembled, equals what it answers unstreamed (ids aside)."""
    path = "chat/completions" if endpoint == "chat" else "completions"
    question: dict[str, Any] = {"model": "m", "max_tokens": 20}
    if endpoint == "chat":
        question["messages"] = [{"role": "user", "content": "Hello there"}]
    else:
        question["prompt"] = "Hello there"
    async with MockUpstream(name="up") as up:
        up.behave("ok", chunks=4)
        async with http.post(f"{up.base_url}/{path}", json=question) as response:
            whole = await response.json()
        assembler = StreamAssembler(endpoint)  # type: ignore[arg-type]
        streamed = {**question, "stream": True, "stream_options": {"include_usage": True}}
        async with http.post(f"{up.base_url}/{path}", json=streamed) as response:
            raw = await response.read()
        for event in events_of(raw):  # providers frame whole events for the steps
            assembler.feed(event)
    assembled = orjson.loads(assembler.answer() or b"null")
    for answer in (whole, assembled):
        del answer["id"], answer["created"]
        if endpoint == "chat":
            answer["choices"][0]["message"].pop("refusal", None)
    assert assembled == whole
