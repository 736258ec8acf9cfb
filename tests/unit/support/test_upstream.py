"""Self-tests of the mock upstream used by the integration tests."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import pytest

from tests.support.upstream import Behaviour, MockUpstream

MESSAGES = [{"role": "user", "content": "say hello to me"}]


def sdk(up: MockUpstream) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=up.base_url, api_key="x", max_retries=0)


async def test_chat_ok_echoes_model_and_names_the_mock() -> None:
    """A plain chat call gets the mock's deterministic reply, usage and x-mock-name."""
    async with MockUpstream(name="east") as up, sdk(up) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        reply = raw.parse()
    assert raw.headers["x-mock-name"] == "east"
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == "gpt-4o-mini"
    assert reply.choices[0].message.content == "mock reply from east"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (4, 4)
    assert reply.usage.total_tokens == 8
    rec = up.requests[0]
    assert (rec.method, rec.path, rec.json["model"]) == (
        "POST",
        "/v1/chat/completions",
        "gpt-4o-mini",
    )
    assert rec.headers["authorization"] == "Bearer x"
    assert rec.completed and not rec.disconnected


async def test_chat_stream_with_include_usage_ends_with_usage_chunk() -> None:
    """A stream asking for usage gets usage=None on every chunk, then a choices=[] usage chunk."""
    async with MockUpstream() as up, sdk(up) as client:
        stream = await client.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        async with stream:
            chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "mock reply from mock"
    assert len(chunks) == 5 + 3  # role chunk, 5 content chunks, finish chunk, usage chunk
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 8
    assert up.requests[0].completed


@pytest.mark.parametrize("mode", ["ok", "stream_no_usage"])
async def test_chat_stream_without_usage(mode: str) -> None:
    """Without include_usage (or with an old backend) no chunk carries usage at all."""
    async with MockUpstream() as up, sdk(up) as client:
        up.behave(mode, chunks=3)  # type: ignore[arg-type]
        options = {"include_usage": True} if mode == "stream_no_usage" else None
        stream = await client.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, stream_options=options or openai.omit
        )
        async with stream:
            chunks = [c async for c in stream]
    assert len(chunks) == 3 + 2
    assert all(c.usage is None and c.choices for c in chunks)
    assert all("usage" not in c.model_fields_set for c in chunks)


async def test_embeddings_one_vector_per_input() -> None:
    """Embeddings return one deterministic vector per input, for float and base64 formats."""
    async with MockUpstream() as up, sdk(up) as client:
        many = await client.embeddings.create(model="emb", input=["a b", "c"], dimensions=4)
        one = await client.embeddings.create(model="emb", input="a b", encoding_format="base64")
    assert [d.index for d in many.data] == [0, 1]
    assert len(many.data[0].embedding) == 4
    assert many.usage.prompt_tokens == many.usage.total_tokens == 3
    assert len(one.data) == 1
    assert isinstance(one.data[0].embedding, str)  # base64 passed through by the SDK
    assert up.requests[1].json["encoding_format"] == "base64"


async def test_responses_api_plain_and_streamed() -> None:
    """The Responses API reports input/output tokens; its stream ends with response.completed."""
    async with MockUpstream(name="r") as up, sdk(up) as client:
        resp = await client.responses.create(model="m", input="hello there")
        stream = await client.responses.create(model="m", input="hello there", stream=True)
        async with stream:
            events = [e async for e in stream]
    assert resp.output_text == "mock reply from r"
    assert resp.usage is not None and (resp.usage.input_tokens, resp.usage.output_tokens) == (2, 4)
    assert events[0].type == "response.created"
    last = events[-1]
    assert last.type == "response.completed"
    assert last.response.usage is not None and last.response.usage.total_tokens == 6
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "mock reply from r"


async def test_script_runs_once_then_default_applies() -> None:
    """Scripted behaviours are used in order, then the default takes over."""
    async with MockUpstream() as up, sdk(up) as client:
        up.behave("status", status=503)
        up.script(
            [
                "ok",
                Behaviour("status", status=400, body={"error": {"message": "at " + up.base_url}}),
            ]
        )
        await client.models.list()
        with pytest.raises(openai.BadRequestError, match=r"at http://127\.0\.0\.1"):
            await client.models.list()
        with pytest.raises(openai.InternalServerError):
            await client.models.list()


async def test_status_429_with_retry_after() -> None:
    """Mode "status" returns the status, an OpenAI error body and the retry-after header."""
    async with MockUpstream() as up, aiohttp.ClientSession() as http:
        up.behave("status", status=429, retry_after=2)
        async with http.post(f"{up.base_url}/chat/completions", json={"model": "m"}) as resp:
            body = await resp.json()
            assert resp.status == 429
            assert resp.headers["retry-after"] == "2"
    assert body["error"]["code"] == "rate_limit_exceeded"


async def test_azure_path_requires_api_version_and_key() -> None:
    """Azure-style paths need api-key and api-version, and the deployment names the model."""
    url_base = "/openai/deployments/gpt4/chat/completions"
    async with MockUpstream() as up, aiohttp.ClientSession(up.origin) as http:
        async with http.post(url_base, json={"messages": MESSAGES}, headers={"api-key": "k"}) as r:
            assert r.status == 400
        url = f"{url_base}?api-version=2024-10-21"
        async with http.post(url, json={"messages": MESSAGES}) as r:
            assert r.status == 401
        async with http.post(url, json={"messages": MESSAGES}, headers={"api-key": "k"}) as r:
            reply = await r.json()
    assert reply["model"] == "gpt4"
    assert up.requests[-1].query == {"api-version": "2024-10-21"}
    assert up.requests[-1].headers["api-key"] == "k"


async def test_stream_drop_aborts_without_done() -> None:
    """Mode "stream_drop" cuts the connection mid-stream; it is not counted as a disconnect."""
    async with MockUpstream() as up, aiohttp.ClientSession() as http:
        up.behave("stream_drop", fault_after=2)
        body = {"model": "m", "stream": True}
        async with http.post(f"{up.base_url}/chat/completions", json=body) as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
    assert up.requests[0].dropped
    assert up.disconnects == 0


async def test_client_hang_up_on_hanging_upstream_is_recorded() -> None:
    """A client that gives up waiting for headers shows up in up.disconnects."""
    async with MockUpstream() as up, aiohttp.ClientSession() as http:
        up.behave("hang")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await http.post(f"{up.base_url}/chat/completions", json={"model": "m"})
        await up.wait_for_disconnects(1)
        assert up.requests[0].disconnected and not up.requests[0].completed


async def test_client_hang_up_mid_stream_is_recorded() -> None:
    """A client that closes a stalled stream shows up in up.disconnects."""
    async with MockUpstream() as up, aiohttp.ClientSession() as http:
        up.behave("stream_stall", fault_after=1)
        body = {"model": "m", "stream": True}
        async with http.post(f"{up.base_url}/chat/completions", json=body) as resp:
            first = await resp.content.readuntil(b"\n\n")
            assert first.startswith(b"data: {")
            resp.close()
        await up.wait_for_disconnects(1)
        assert not up.requests[0].completed
