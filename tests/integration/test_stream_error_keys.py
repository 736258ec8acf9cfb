"""A provider's key never reaches the client through a streamed upstream error event
(black-box probe): an upstream that accepts a stream and then sends an error event
quoting the request's `Authorization` (or Azure's `api-key`) has it redacted, as a
non-streamed error body is, however the echo spells it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import httpx2 as httpx
import orjson
import pytest
from aiohttp import web

from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway

KEY = "prov-key-7f3a9c1e5b/Zq"  # not key-shaped: only knowing our own key can catch it

POLICY = """
providers:
  up: {{type: {kind}, api_base: "{base}", api_key: "${{UP_KEY}}"{extra}}}
models:
  m:
    deployments: [{{provider: up, model: upstream-model}}]
    routing: {{retries: 0}}
teams:
  demo: {{models: ["*"]}}
"""
KINDS = {
    "openai": ("/v1", ""),
    "openai-compatible": ("/v1", ""),
    "azure": ("", ', api_version: "2024-10-21"'),
}

CONTENT = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
    b'"model":"upstream-model","choices":[{"index":0,"delta":{"content":"Hel"},'
    b'"finish_reason":null}]}\n\n'
)
RESPONSES_START = (
    b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
    b'"response":{"id":"resp_1","object":"response","status":"in_progress","output":[],'
    b'"error":null}}\n\n'
)


def credential(request: web.Request) -> str:
    """What the gateway sent as its credential: `Bearer KEY`, or Azure's bare key."""
    return request.headers.get("authorization") or request.headers.get("api-key") or ""


ECHOES: dict[str, Callable[[str], bytes]] = {
    # as written, inside a JSON string
    "plain": lambda sent: (
        b'data: {"error":{"message":"bad auth: '
        + sent.encode()
        + b'","type":"server_error","param":null,"code":null}}\n\n'
    ),
    # JSON-escaped (`\/`, and every character as \uXXXX)
    "escaped": lambda sent: (
        b'data: {"error":{"message":"bad auth: '
        + sent.replace("/", "\\/").encode()
        + b'","type":"server_error","code":"'
        + "".join(f"\\u{ord(c):04x}" for c in sent).encode()
        + b'"}}\n\n'
    ),
    # not even JSON
    "broken": lambda sent: b'data: {"error": "bad auth: ' + sent.encode() + b"\n\n",
}


@contextlib.asynccontextmanager
async def echoing_upstream(
    echo: Callable[[str], bytes], *, first: bytes | None, responses: bool = False
) -> AsyncIterator[str]:
    """A 200 text/event-stream whose error event quotes the credential it was sent."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        if first is not None:
            await response.write(first)
        event = echo(credential(request))
        if responses:  # Responses' own error event: `event: error` and a flat object
            message = orjson.dumps(f"bad auth: {credential(request)}")
            event = (
                b'event: error\ndata: {"type":"error","code":"server_error","message":'
                + message
                + b',"param":null,"sequence_number":1}\n\n'
            )
        await response.write(event)
        return response

    app = web.Application()
    for path in (
        "/v1/chat/completions",
        "/v1/responses",
        "/openai/deployments/{name}/chat/completions",
        "/openai/responses",
    ):
        app.router.add_post(path, stream)
    async with serving(app) as origin:
        yield origin


async def streamed(gw, path: str, body: dict) -> httpx.Response:
    headers = {"authorization": f"Bearer {await gw.token()}"}
    async with httpx.AsyncClient(base_url=gw.origin, timeout=10) as http:
        return await http.post(path, json=body, headers=headers)


def spellings(key: str) -> list[bytes]:
    escaped = "".join(f"\\u{ord(c):04x}" for c in key)
    return [key.encode(), key.replace("/", "\\/").encode(), escaped.encode(), b"7f3a9c1e5b"]


CHAT = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("echo", sorted(ECHOES))
@pytest.mark.parametrize("after_content", [False, True], ids=["first", "after_content"])
async def test_a_streamed_error_event_never_carries_our_key(
    tmp_path, monkeypatch, kind, echo, after_content
):
    """Whatever the upstream's error event quotes of our credential is redacted."""
    monkeypatch.setenv("UP_KEY", KEY)
    suffix, extra = KINDS[kind]
    first = CONTENT if after_content else None
    async with echoing_upstream(ECHOES[echo], first=first) as origin:
        text = POLICY.format(kind=kind, base=origin + suffix, extra=extra)
        async with running_gateway(tmp_path, text) as gw:
            reply = await streamed(gw, "/v1/chat/completions", CHAT)
    assert not any(spelling in reply.content for spelling in spellings(KEY)), reply.content
    if after_content:  # the client still hears of the upstream's error, redacted
        assert reply.status_code == 200
        assert b"Hel" in reply.content and b'"error"' in reply.content
        if echo != "broken":
            assert b"[redacted]" in reply.content
            error_event = next(e for e in reply.content.split(b"\n\n") if b'"error"' in e)
            assert orjson.loads(error_event[len(b"data: ") :])["error"]["type"] == "server_error"


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_responses_stream_error_event_never_carries_our_key(tmp_path, monkeypatch, kind):
    """The Responses API's `error` event, after the response began, is redacted too."""
    monkeypatch.setenv("UP_KEY", KEY)
    suffix, extra = KINDS[kind]
    body = {"model": "m", "stream": True, "input": "hi"}
    async with echoing_upstream(ECHOES["plain"], first=RESPONSES_START, responses=True) as origin:
        text = POLICY.format(kind=kind, base=origin + suffix, extra=extra)
        async with running_gateway(tmp_path, text) as gw:
            reply = await streamed(gw, "/v1/responses", body)
    assert reply.status_code == 200
    assert not any(spelling in reply.content for spelling in spellings(KEY)), reply.content
    error_event = next(e for e in reply.content.split(b"\n\n") if b"event: error" in e)
    payload = orjson.loads(error_event.split(b"data: ", 1)[1])
    assert payload["message"] in ("bad auth: [redacted]", "bad auth: Bearer [redacted]")


def incomplete_event(said: str) -> bytes:
    """A `response.incomplete` whose reason (upstream text) says `said`."""
    payload = {
        "type": "response.incomplete",
        "sequence_number": 2,
        "response": {
            "id": "resp_1",
            "object": "response",
            "status": "incomplete",
            "output": [],
            "error": None,
            "incomplete_details": {"reason": said},
        },
    }
    return b"event: response.incomplete\ndata: " + orjson.dumps(payload) + b"\n\n"


@contextlib.asynccontextmanager
async def incomplete_upstream() -> AsyncIterator[str]:
    """A Responses stream ending on `response.incomplete` whose reason quotes the credential
    and the URL the gateway called."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(RESPONSES_START)
        await response.write(incomplete_event(f"quota: {credential(request)} at {request.url}"))
        return response

    app = web.Application()
    app.router.add_post("/v1/responses", stream)
    async with serving(app) as origin:
        yield origin


async def test_a_streamed_incomplete_response_never_carries_our_key_or_url(tmp_path, monkeypatch):
    """A streamed `response.incomplete`'s `incomplete_details` is cleaned of our key and the
    upstream's URL, as a whole incomplete answer's is; the event stays as it came otherwise."""
    monkeypatch.setenv("UP_KEY", KEY)
    body = {"model": "m", "stream": True, "input": "hi"}
    async with incomplete_upstream() as origin:
        text = POLICY.format(kind="openai-compatible", base=origin + "/v1", extra="")
        async with running_gateway(tmp_path, text) as gw:
            reply = await streamed(gw, "/v1/responses", body)
    assert reply.status_code == 200
    assert not any(spelling in reply.content for spelling in spellings(KEY)), reply.content
    assert origin.encode() not in reply.content
    event = next(e for e in reply.content.split(b"\n\n") if b"response.incomplete" in e)
    payload = orjson.loads(event.split(b"data: ", 1)[1])
    assert payload["response"]["status"] == "incomplete"
    assert payload["response"]["incomplete_details"]["reason"] == (
        "quota: Bearer [redacted] at [upstream]"
    )


@contextlib.asynccontextmanager
async def url_quoting_upstream() -> AsyncIterator[str]:
    """A chat stream whose error event, after content, quotes the URL it was called at
    and the credential it got."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(CONTENT)
        message = orjson.dumps(f"{request.url} refused {credential(request)}")
        await response.write(b'data: {"error":{"message":' + message + b',"type":"x"}}\n\n')
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    async with serving(app) as origin:
        yield origin


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "keyless"])
async def test_a_streamed_error_event_never_carries_the_upstreams_url(tmp_path, monkeypatch, keyed):
    """An error event quoting the upstream's URL has it replaced, as a non-streamed error's
    is, with or without a provider key (a keyless vLLM's address is internal too)."""
    monkeypatch.setenv("UP_KEY", KEY)
    async with url_quoting_upstream() as origin:
        text = POLICY.format(kind="openai-compatible", base=origin + "/v1", extra="")
        if not keyed:
            text = text.replace(', api_key: "${UP_KEY}"', "")
        async with running_gateway(tmp_path, text) as gw:
            reply = await streamed(gw, "/v1/chat/completions", CHAT)
    assert origin.encode() not in reply.content and b"127.0.0.1" not in reply.content
    error_event = next(e for e in reply.content.split(b"\n\n") if b'"error"' in e)
    message = orjson.loads(error_event[len(b"data: ") :])["error"]["message"]
    assert message == ("[upstream] refused Bearer [redacted]" if keyed else "[upstream] refused ")
