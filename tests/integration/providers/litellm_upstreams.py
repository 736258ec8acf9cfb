"""Loopback mock upstreams speaking Anthropic's, Gemini's and Bedrock's own wire APIs.

Each mock is a real aiohttp server on 127.0.0.1 (OS-chosen port) that records
every request, answers with canned text "Hello there" and usage 12 + 3 tokens,
can be told to fail the next requests (`fail_next`), and can stream forever
(`stream_forever`) so a test can see when the client hangs up (`hung_up`). The
Anthropic mock puts a signed thinking block before its text when told (`thinking`).
"""

from __future__ import annotations

import asyncio
import binascii
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.providers.base import Endpoint, UpstreamCall
from gateway.providers.litellm_adapter import LitellmProvider
from gateway.telemetry.current import CURRENT_TRACE

API_KEY = "sk-test-provider-key-0123456789"
AWS = {
    "aws_region_name": "us-east-1",
    "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
# Warnings litellm 1.110.2 itself triggers at run time, only visible under -W error:
# pydantic complains about ReadOnly TypedDict items while building a schema on
# first use, and about an instance attribute litellm reads on Bedrock's usage chunk.
LITELLM_WARNINGS = pytest.mark.filterwarnings(
    "ignore:.* on TypedDict class .* using the `ReadOnly` qualifier:UserWarning",
    "ignore:Accessing the 'model_[a-z_]+' attribute on the instance is deprecated:DeprecationWarning",
)

PROMPT_TOKENS = 12
COMPLETION_TOKENS = 3
WORDS = ("Hello", " there")
EMBEDDING = [0.25, -0.5, 1.0]
THINKING_SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxSig"  # opaque, as Anthropic signs thinking


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class _TracedRequest:
    """A request's trace (telemetry/current.py) as a provider sees it: the headers it adds."""

    def add_headers(self, headers: dict[str, str]) -> None:
        headers["traceparent"] = TRACEPARENT


@contextmanager
def traced() -> Iterator[None]:
    """Run the provider calls inside as those of a traced request."""
    token = CURRENT_TRACE.set(_TracedRequest())  # type: ignore[arg-type]
    try:
        yield
    finally:
        CURRENT_TRACE.reset(token)


@dataclass(frozen=True)
class Seen:
    """One request as the upstream received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    body: Any


@dataclass(frozen=True)
class Fault:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class MockUpstream:
    base_url: str = ""
    seen: list[Seen] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    stream_forever: bool = False
    error_mid_stream: Any = None  # an error event sent after the first word
    ends_early: bool = False  # the body ends cleanly after the first word
    thinking: str | None = None  # Anthropic: a thinking block, signed, before the text
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)

    def fail_next(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.faults.append(Fault(status, body, headers or {}))

    @property
    def last(self) -> Seen:
        return self.seen[-1]


Handler = Callable[[web.Request, MockUpstream, Any], Awaitable[web.StreamResponse]]


def _recording(mock: MockUpstream, handler: Handler) -> Callable[..., Awaitable[Any]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw
        mock.seen.append(
            Seen(request.method, request.path, dict(request.query), request.headers, body)
        )
        if mock.faults:
            fault = mock.faults.pop(0)
            payload = fault.body if isinstance(fault.body, bytes) else orjson.dumps(fault.body)
            return web.Response(
                status=fault.status,
                body=payload,
                headers={"content-type": "application/json", **fault.headers},
            )
        return await handler(request, mock, body)

    return handle


async def _stream(
    request: web.Request, mock: MockUpstream, content_type: str, events: list[bytes],
    tick: Callable[[int], bytes],
) -> web.StreamResponse:  # fmt: skip
    """Send `events`; with `stream_forever`, then `tick(i)` until the client leaves."""
    response = web.StreamResponse(headers={"content-type": content_type})
    await response.prepare(request)
    try:
        for event in events:
            await response.write(event)
        i = 0
        while mock.stream_forever:
            await asyncio.sleep(0.01)
            await response.write(tick(i))
            i += 1
    except ConnectionError:
        mock.hung_up.set()
        return response
    except asyncio.CancelledError:
        mock.hung_up.set()
        raise
    await response.write_eof()
    return response


# --- Anthropic Messages API -------------------------------------------------


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _anthropic_messages(
    request: web.Request, mock: MockUpstream, body: Any
) -> web.StreamResponse:
    model = body["model"]
    thinking = mock.thinking
    if not body.get("stream"):
        content: list[dict[str, Any]] = [{"type": "text", "text": "".join(WORDS)}]
        if thinking is not None:
            block = {"type": "thinking", "thinking": thinking, "signature": THINKING_SIGNATURE}
            content.insert(0, block)
        return web.json_response(
            {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS},
            }
        )
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_01", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1},
        },
    }  # fmt: skip
    events = [_sse("message_start", start)]
    index = 0  # the text block's
    if thinking is not None:
        events += _anthropic_thinking_events(thinking)
        index = 1
    events += [
        _sse(
            "content_block_start",
            {"type": "content_block_start", "index": index,
             "content_block": {"type": "text", "text": ""}},
        ),
        _sse("ping", {"type": "ping"}),
    ]  # fmt: skip

    def delta(text: str) -> bytes:
        return _sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": index,
             "delta": {"type": "text_delta", "text": text}},
        )  # fmt: skip

    if mock.error_mid_stream is not None or mock.ends_early:
        events.append(delta(WORDS[0]))
        if mock.error_mid_stream is not None:
            events.append(_sse("error", mock.error_mid_stream))
        return await _stream(request, mock, "text/event-stream", events, lambda i: b"")
    events += [delta(word) for word in WORDS]
    if not mock.stream_forever:
        events += [
            _sse("content_block_stop", {"type": "content_block_stop", "index": index}),
            _sse(
                "message_delta",
                {"type": "message_delta",
                 "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                 "usage": {"output_tokens": COMPLETION_TOKENS}},
            ),
            _sse("message_stop", {"type": "message_stop"}),
        ]  # fmt: skip
    return await _stream(request, mock, "text/event-stream", events, lambda i: delta(f" {i}"))


def _anthropic_thinking_events(thinking: str) -> list[bytes]:
    """Block 0 as Anthropic streams extended thinking: the text in two deltas, then its
    signature."""
    half = len(thinking) // 2

    def delta(payload: dict[str, str]) -> bytes:
        return _sse("content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": payload})  # fmt: skip

    return [
        _sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0,
             "content_block": {"type": "thinking", "thinking": ""}},
        ),
        delta({"type": "thinking_delta", "thinking": thinking[:half]}),
        delta({"type": "thinking_delta", "thinking": thinking[half:]}),
        delta({"type": "signature_delta", "signature": THINKING_SIGNATURE}),
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ]  # fmt: skip


# --- Gemini (Google AI Studio) ----------------------------------------------


def _gemini_usage() -> dict[str, int]:
    return {
        "promptTokenCount": PROMPT_TOKENS,
        "candidatesTokenCount": COMPLETION_TOKENS,
        "totalTokenCount": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


def _gemini_chunk(text: str, *, is_last: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "content": {"role": "model", "parts": [{"text": text}]},
        "index": 0,
    }
    chunk: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-test"}
    if is_last:
        candidate["finishReason"] = "STOP"
        chunk["usageMetadata"] = _gemini_usage()
    return chunk


async def _gemini_model_action(
    request: web.Request, mock: MockUpstream, body: Any
) -> web.StreamResponse:
    model, _, action = request.match_info["model_action"].partition(":")
    if action == "generateContent":
        return web.json_response(_gemini_chunk("".join(WORDS), is_last=True))
    if action == "streamGenerateContent":

        def data(chunk: dict[str, Any]) -> bytes:
            return b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"

        events = [
            data(_gemini_chunk(word, is_last=not mock.stream_forever and i == len(WORDS) - 1))
            for i, word in enumerate(WORDS)
        ]
        if mock.ends_early:  # the first word, then a clean end with no finishReason
            events = events[:1]
        tick = lambda i: data(_gemini_chunk(f" {i}", is_last=False))  # noqa: E731
        return await _stream(request, mock, "text/event-stream", events, tick)
    if action == "batchEmbedContents":
        return web.json_response({"embeddings": [{"values": EMBEDDING} for _ in body["requests"]]})
    if action == "embedContent":
        return web.json_response({"embedding": {"values": EMBEDDING}})
    return web.json_response(
        {"error": {"code": 404, "message": f"no {action} for {model}"}}, status=404
    )


# --- Bedrock Converse -------------------------------------------------------


def eventstream_frame(event_type: str, payload: dict[str, Any], *, is_error: bool = False) -> bytes:
    """One AWS event-stream message (the binary framing of Bedrock's converse-stream).

    `is_error` makes it an exception message, `event_type` naming the exception.
    """
    kind = (":exception-type", "exception") if is_error else (":event-type", "event")
    headers = b""
    for name, value in (
        (kind[0], event_type),
        (":content-type", "application/json"),
        (":message-type", kind[1]),
    ):
        encoded = value.encode()
        headers += bytes([len(name)]) + name.encode() + b"\x07"  # 7: string value
        headers += struct.pack(">H", len(encoded)) + encoded
    body = orjson.dumps(payload)
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message))


def _converse_usage() -> dict[str, int]:
    return {
        "inputTokens": PROMPT_TOKENS,
        "outputTokens": COMPLETION_TOKENS,
        "totalTokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


async def _bedrock_model(request: web.Request, mock: MockUpstream, body: Any) -> web.StreamResponse:
    action = request.match_info["action"]
    if action == "converse":
        return web.json_response(
            {
                "output": {"message": {"role": "assistant", "content": [{"text": "".join(WORDS)}]}},
                "stopReason": "end_turn",
                "usage": _converse_usage(),
                "metrics": {"latencyMs": 42},
            }
        )
    if action == "converse-stream":

        def delta(text: str) -> bytes:
            return eventstream_frame(
                "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}}
            )

        events = [eventstream_frame("messageStart", {"role": "assistant"})]
        if mock.error_mid_stream is not None:
            error = eventstream_frame("throttlingException", mock.error_mid_stream, is_error=True)
            events += [delta(WORDS[0]), error]
            content_type = "application/vnd.amazon.eventstream"
            return await _stream(request, mock, content_type, events, lambda i: b"")
        events += [delta(word) for word in WORDS]
        if not mock.stream_forever:
            events += [
                eventstream_frame("contentBlockStop", {"contentBlockIndex": 0}),
                eventstream_frame("messageStop", {"stopReason": "end_turn"}),
                eventstream_frame(
                    "metadata", {"usage": _converse_usage(), "metrics": {"latencyMs": 42}}
                ),
            ]
        tick = lambda i: delta(f" {i}")  # noqa: E731
        return await _stream(request, mock, "application/vnd.amazon.eventstream", events, tick)
    if action == "invoke":  # Titan text embeddings: one input per request
        return web.json_response({"embedding": EMBEDDING, "inputTextTokenCount": 2})
    return web.json_response({"message": f"unknown action {action}"}, status=404)


async def _unknown(request: web.Request, mock: MockUpstream, body: Any) -> web.StreamResponse:
    return web.json_response({"error": {"message": "no such route"}}, status=404)


_ROUTES: dict[str, list[tuple[str, Handler]]] = {
    "anthropic": [("/v1/messages", _anthropic_messages)],
    "gemini": [("/models/{model_action}", _gemini_model_action)],
    "bedrock": [("/model/{model}/{action}", _bedrock_model)],
}


@asynccontextmanager
async def run_upstream(kind: str) -> AsyncIterator[MockUpstream]:
    """Serve the `kind` mock on 127.0.0.1 until the block ends."""
    mock = MockUpstream()
    app = web.Application()
    for path, handler in _ROUTES[kind]:
        app.router.add_post(path, _recording(mock, handler))
    app.router.add_route("*", "/{tail:.*}", _recording(mock, _unknown))
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    mock.base_url = f"http://{host}:{port}"
    try:
        yield mock
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class Deployment:
    """A mock upstream and the provider pointed at it."""

    upstream: MockUpstream
    provider: LitellmProvider


# --- The client side: calls and streams as the gateway makes and reads them --


def upstream_call(
    endpoint: Endpoint, model: str, body: dict[str, Any], *, is_stream: bool = False
) -> UpstreamCall:
    return UpstreamCall(
        endpoint=endpoint,
        body={"model": model, **body, **({"stream": True} if is_stream else {})},
        model=model,
        is_stream=is_stream,
        request_id="req-test",
    )


def token_counts(usage: dict[str, Any]) -> tuple[int, int, int]:
    """(prompt, completion, total) tokens of an OpenAI usage object."""
    return (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"])


USAGE_COUNTS = (PROMPT_TOKENS, COMPLETION_TOKENS, PROMPT_TOKENS + COMPLETION_TOKENS)


async def read_sse(events: AsyncIterator[bytes]) -> list[dict[str, Any]]:
    """Every event's JSON; asserts SSE framing and that `[DONE]` comes last, once."""
    raw = [event async for event in events]
    assert raw, "the stream yielded nothing"
    assert raw[-1] == b"data: [DONE]\n\n"
    for event in raw:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n"), event
        assert event.count(b"\n\n") == 1, event
    return [orjson.loads(event[len(b"data: ") : -2]) for event in raw[:-1]]
