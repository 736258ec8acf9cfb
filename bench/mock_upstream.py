"""A minimal, cheap OpenAI-compatible upstream for benchmarks.

Answers `POST /v1/chat/completions` with a pre-encoded `chat.completion` (with
usage) or, when the request says `"stream": true`, a 20-event SSE stream of
`chat.completion.chunk`s, a usage chunk only when `stream_options.include_usage`
is true, then `data: [DONE]`. Every response is encoded once at start, so the
per-request work is one small JSON parse and a few socket writes.

Raw ASGI on uvicorn (uvloop + httptools): measured cheaper per request than
aiohttp.web on this machine. Each stream event is its own write, spaced by
`--event-interval-ms` (default 1 ms) so a proxy in front sees them arrive one at
a time, as it would from a real model.

    python bench/mock_upstream.py --port 9001 [--event-interval-ms 1]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

UPSTREAM_MODEL = "bench-upstream-model"
CREATED = 1_760_000_000
STREAM_EVENTS = 20
PROMPT_TOKENS = 260
WORDS = (
    "The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while",
    "the", "gateway", "forwards", "every", "token", "without", "re-encoding", "a",
    "single", "byte",
)  # fmt: skip

_PATH = "/v1/chat/completions"


def _usage(completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
    }


def build_completion() -> bytes:
    text = " ".join(WORDS[:STREAM_EVENTS])
    return orjson.dumps(
        {
            "id": "chatcmpl-bench0000000000000000000000",
            "object": "chat.completion",
            "created": CREATED,
            "model": UPSTREAM_MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(STREAM_EVENTS),
        }
    )


def build_stream(include_usage: bool) -> list[bytes]:
    """20 content events (role on the first, finish_reason on the last), maybe usage, [DONE]."""
    events: list[bytes] = []
    for i in range(STREAM_EVENTS):
        delta: dict[str, Any] = {"content": ("" if i == 0 else " ") + WORDS[i]}
        if i == 0:
            delta = {"role": "assistant", **delta}
        chunk: dict[str, Any] = {
            "id": "chatcmpl-bench0000000000000000000000",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": UPSTREAM_MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": "stop" if i == STREAM_EVENTS - 1 else None,
                }
            ],
        }
        if include_usage:
            chunk["usage"] = None
        events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    if include_usage:
        usage_chunk = {
            "id": "chatcmpl-bench0000000000000000000000",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": UPSTREAM_MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [],
            "usage": _usage(STREAM_EVENTS),
        }
        events.append(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def _error_body(message: str) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
    )


class MockUpstream:
    """Raw ASGI app; everything it sends is built in __init__."""

    def __init__(self, event_interval_s: float) -> None:
        self.interval = event_interval_s
        self.completion = build_completion()
        self.stream_plain = build_stream(include_usage=False)
        self.stream_usage = build_stream(include_usage=True)
        self.json_start: Message = {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self.completion)).encode()),
            ],
        }
        self.json_body: Message = {"type": "http.response.body", "body": self.completion}
        self.sse_start: Message = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != _PATH or scope["method"] != "POST":
            await self._error(send, 404, "not found")
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            await self._error(send, 400, "invalid JSON")
            return
        if not isinstance(request, dict):
            await self._error(send, 400, "body must be a JSON object")
            return
        if request.get("stream") is True:
            options = request.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            await self._stream(send, self.stream_usage if usage else self.stream_plain)
        else:
            await send(self.json_start)
            await send(self.json_body)

    async def _stream(self, send: Send, events: list[bytes]) -> None:
        await send(self.sse_start)
        last = len(events) - 1
        for i, event in enumerate(events):
            await send({"type": "http.response.body", "body": event, "more_body": i < last})
            if self.interval and i < last:
                await asyncio.sleep(self.interval)

    @staticmethod
    async def _error(send: Send, status: int, message: str) -> None:
        body = _error_body(message)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--event-interval-ms",
        type=float,
        default=1.0,
        help="pause between stream events (0: write them back to back)",
    )
    args = parser.parse_args()

    import uvicorn

    uvicorn.run(
        MockUpstream(args.event_interval_ms / 1000.0),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
