"""A stream whose first upstream event is an error event, or not JSON, has told the client
nothing: the attempt fails and the request fails over (black-box probe of the wire);
with no deployment left the client gets the gateway's own 502, never those bytes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx2 as httpx
import openai
import orjson
import pytest
from aiohttp import web

from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  bad: {{type: openai-compatible, api_base: "{bad}"}}
  good: {{type: openai-compatible, api_base: "{good}"}}
models:
  m:
    deployments:
      - {{provider: bad, model: bad-model}}
      - {{provider: good, model: good-model, priority: 2}}
    routing: {{retries: 1, failure_threshold: 5}}
teams:
  demo: {{models: ["*"]}}
"""
ALONE = POLICY.replace("      - {{provider: good, model: good-model, priority: 2}}\n", "")

FIRST_EVENTS = {
    "error_event": b'data: {"error":{"message":"overloaded","type":"server_error","code":null}}\n\n',
    "error_string": b'data: {"error":"model is loading"}\n\n',
    "not_json": b'data: {"id":"chatcmpl-1","choices":[{"delta\n\n',
    "html": b"data: <html>502 Bad Gateway</html>\n\n",
    "responses_error": b'event: error\ndata: {"type":"error","code":"server_error",'
    b'"message":"boom","param":null,"sequence_number":0}\n\n',
}
CONTENT = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
    b'"model":"bad-model","choices":[{"index":0,"delta":{"content":"Hi"},'
    b'"finish_reason":"stop"}]}\n\n'
)


@contextlib.asynccontextmanager
async def first_event_upstream(first: bytes) -> AsyncIterator[str]:
    """200 text/event-stream: `first`, then an ordinary finished answer."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(first)
        await response.write(CONTENT + b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    app.router.add_post("/v1/responses", stream)
    async with serving(app) as origin:
        yield f"{origin}/v1"


CHAT = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


async def post(gw, path: str, body: dict) -> httpx.Response:
    headers = {"authorization": f"Bearer {await gw.token()}"}
    async with httpx.AsyncClient(base_url=gw.origin, timeout=10) as http:
        return await http.post(path, json=body, headers=headers)


@pytest.mark.parametrize("first", sorted(FIRST_EVENTS))
async def test_a_stream_that_begins_with_an_error_fails_over(tmp_path, first):
    """The next deployment answers; none of the first one's bytes reach the client."""
    async with first_event_upstream(FIRST_EVENTS[first]) as bad, MockUpstream("good") as good:
        text = POLICY.format(bad=bad, good=good.base_url)
        async with running_gateway(tmp_path, text) as gw:
            reply = await post(gw, "/v1/chat/completions", CHAT)
            client = await gw.openai()
            chunks = [c async for c in await client.chat.completions.create(**CHAT)]
    assert reply.status_code == 200
    assert reply.headers["x-gateway-deployment"] == "good/good-model"
    assert FIRST_EVENTS[first].strip() not in reply.content
    assert b"error" not in reply.content
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith(
        "mock reply from good"
    )
    assert len(good.requests) == 2


@pytest.mark.parametrize("first", sorted(FIRST_EVENTS))
async def test_with_no_deployment_left_the_client_gets_the_gateways_own_502(tmp_path, first):
    async with first_event_upstream(FIRST_EVENTS[first]) as bad:
        async with running_gateway(tmp_path, ALONE.format(bad=bad, good=bad)) as gw:
            reply = await post(gw, "/v1/chat/completions", CHAT)
            client = await gw.openai()
            with pytest.raises(openai.InternalServerError) as caught:
                await client.chat.completions.create(**CHAT)
    assert reply.status_code == 502
    assert reply.headers["content-type"].startswith("application/json")
    assert orjson.loads(reply.content)["error"]["code"] == "upstream_unavailable"
    assert FIRST_EVENTS[first].strip() not in reply.content
    assert caught.value.code == "upstream_unavailable"


async def test_a_responses_stream_that_begins_with_its_error_event_fails_over(tmp_path):
    body = {"model": "m", "stream": True, "input": "hi"}
    first = FIRST_EVENTS["responses_error"]
    async with first_event_upstream(first) as bad, MockUpstream("good") as good:
        async with running_gateway(tmp_path, POLICY.format(bad=bad, good=good.base_url)) as gw:
            reply = await post(gw, "/v1/responses", body)
    assert reply.status_code == 200
    assert reply.headers["x-gateway-deployment"] == "good/good-model"
    assert b"event: error" not in reply.content
    assert b"response.completed" in reply.content


async def test_an_error_after_the_first_event_is_still_relayed_not_failed_over(tmp_path):
    """Once content reached the client, the stream is the first deployment's to the end."""
    error = FIRST_EVENTS["error_event"]

    @contextlib.asynccontextmanager
    async def content_then_error() -> AsyncIterator[str]:
        async def stream(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            await response.write(CONTENT.replace(b'"stop"', b"null"))
            await response.write(error)
            return response

        app = web.Application()
        app.router.add_post("/v1/chat/completions", stream)
        async with serving(app) as origin:
            yield f"{origin}/v1"

    async with content_then_error() as bad, MockUpstream("good") as good:
        async with running_gateway(tmp_path, POLICY.format(bad=bad, good=good.base_url)) as gw:
            reply = await post(gw, "/v1/chat/completions", CHAT)
    assert reply.headers["x-gateway-deployment"] == "bad/bad-model"
    # The upstream's event, in OpenAI's four fields (its missing `param` added).
    relayed = (
        b'data: {"error":{"message":"overloaded","type":"server_error","param":null,"code":null}}'
    )
    assert error.strip() == relayed.replace(b'"param":null,', b"")
    assert relayed in reply.content
    assert not good.requests


PING = b": ping\n\n"


@contextlib.asynccontextmanager
async def pinging_upstream(then: bytes | None) -> AsyncIterator[str]:
    """200 text/event-stream: a keep-alive comment (OpenRouter's, before the first
    token), then `then` and the end, or (None) nothing more: it hangs."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(PING)
        await asyncio.sleep(0.05)
        if then is None:
            await asyncio.sleep(3600)
        await response.write(then)
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    async with serving(app, handler_cancellation=True) as origin:  # a hang ends with its client
        yield f"{origin}/v1"


@pytest.mark.parametrize("then", [FIRST_EVENTS["error_event"], None], ids=["error", "hang"])
async def test_a_comment_before_the_first_event_does_not_start_the_stream(tmp_path, then):
    """A comment is not an event: the error (or silence) after it still fails over."""
    async with pinging_upstream(then) as bad, MockUpstream("good") as good:
        text = POLICY.format(bad=bad, good=good.base_url).replace(
            "failure_threshold: 5", "failure_threshold: 5, attempt_timeout_s: 0.5"
        )
        async with running_gateway(tmp_path, text) as gw:
            reply = await post(gw, "/v1/chat/completions", CHAT)
    assert reply.status_code == 200
    assert reply.headers["x-gateway-deployment"] == "good/good-model"
    assert b"ping" not in reply.content and b"error" not in reply.content
    assert len(good.requests) == 1 and reply.content.endswith(b"data: [DONE]\n\n")


async def test_a_comment_before_an_answer_is_dropped(tmp_path):
    async with pinging_upstream(CONTENT + b"data: [DONE]\n\n") as bad:
        async with running_gateway(tmp_path, ALONE.format(bad=bad, good=bad)) as gw:
            client = await gw.openai()
            chunks = [c async for c in await client.chat.completions.create(**CHAT)]
            reply = await post(gw, "/v1/chat/completions", CHAT)
    assert reply.status_code == 200 and reply.content.startswith(b"data: ")
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hi"


async def test_a_stream_that_is_only_done_fails_over(tmp_path):
    """`data: [DONE]` with no event before it answered nothing: the next deployment does."""

    async def only_done(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", only_done)
    async with serving(app) as bad, MockUpstream("good") as good:
        text = POLICY.format(bad=f"{bad}/v1", good=good.base_url)
        async with running_gateway(tmp_path, text) as gw:
            reply = await post(gw, "/v1/chat/completions", CHAT)
        (tmp_path / "alone").mkdir()
        async with running_gateway(
            tmp_path / "alone", ALONE.format(bad=f"{bad}/v1", good=f"{bad}/v1")
        ) as gw:
            alone = await post(gw, "/v1/chat/completions", CHAT)
    assert reply.status_code == 200
    assert reply.headers["x-gateway-deployment"] == "good/good-model"
    assert alone.status_code == 502
