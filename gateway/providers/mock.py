"""The built-in `mock` provider: in-process, deterministic, offline.

It answers every endpoint in OpenAI's shapes, streams, and reports usage
counted with the same tokenizer the gateway uses, so a first request succeeds
with no network and no keys. The reply is derived from the prompt, so the same
request always gets the same answer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from gateway.limits.estimate import INLINE_COUNT_CHARS, prompt_chars
from gateway.limits.token_count import count_prompt, count_text, extra_texts
from gateway.providers.base import Endpoint, UpstreamCall, UpstreamClientError, UpstreamReply

EMBEDDING_DIMENSIONS = 256
DONE_EVENT = b"data: [DONE]\n\n"


def _last_user_text(body: Mapping[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    prompt = body.get("prompt", body.get("input", ""))
    return prompt if isinstance(prompt, str) else orjson.dumps(prompt).decode()


async def _prompt_tokens(call: UpstreamCall) -> int:
    """The prompt's tokens; a large prompt (megabytes take seconds) is counted on a
    thread, as the gateway's own estimate does, so the event loop keeps serving."""
    small = prompt_chars(call.endpoint, call.body, extra_texts(call.endpoint, call.body))
    if small <= INLINE_COUNT_CHARS:
        return count_prompt(call.endpoint, call.body, call.model)
    return await asyncio.to_thread(count_prompt, call.endpoint, call.body, call.model)


def _reply_text(body: Mapping[str, Any]) -> str:
    text = _last_user_text(body)
    # Only the first 120 characters are echoed: a multi-megabyte prompt is not split
    # whole on the event loop (the head of the text says the same, unless it is
    # nearly all whitespace).
    said = " ".join(text[:4096].split())
    if len(said) <= 120 and len(text) > 4096:
        said = " ".join(text.split())
    if len(said) > 120:
        said = said[:117] + "..."
    return f"This is the mock provider. You said: {said}" if said else "This is the mock provider."


def _ident(prefix: str, call: UpstreamCall) -> str:
    return f"{prefix}-mock{hashlib.sha256(call.request_id.encode()).hexdigest()[:20]}"


def _embedding(text: str, dimensions: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    raw = b"".join(
        hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(dimensions // 8 + 1)
    )
    values = struct.unpack(f">{dimensions}I", raw[: 4 * dimensions])
    return [round(v / 2**31 - 1.0, 6) for v in values]


def _encoded(vector: list[float], as_base64: bool) -> list[float] | str:
    """OpenAI's `encoding_format`: floats, or base64 of little-endian float32s."""
    if not as_base64:
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _response_sequence(final: dict[str, Any], text: str) -> list[tuple[str, dict[str, Any]]]:
    """OpenAI's event order for one text message, which the SDK's `responses.stream()`
    helper rebuilds the response from: created, in_progress, output_item.added,
    content_part.added, text deltas, output_text.done, content_part.done,
    output_item.done, completed."""
    started = {**final, "status": "in_progress", "output": [], "usage": None}
    message = final["output"][0]
    at = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": started}),
        ("response.in_progress", {"response": started}),
        (
            "response.output_item.added",
            {"output_index": 0, "item": {**message, "status": "in_progress", "content": []}},
        ),
        ("response.content_part.added", {**at, "part": empty_part}),
    ]
    for i, word in enumerate(text.split(" ")):
        delta = word if i == 0 else " " + word
        events.append(("response.output_text.delta", {**at, "delta": delta, "logprobs": []}))
    events += [
        ("response.output_text.done", {**at, "text": text, "logprobs": []}),
        ("response.content_part.done", {**at, "part": {**empty_part, "text": text}}),
        ("response.output_item.done", {"output_index": 0, "item": message}),
        ("response.completed", {"response": final}),
    ]
    return events


class MockProvider:
    endpoints: frozenset[Endpoint] = frozenset({"chat", "completions", "embeddings", "responses"})

    def __init__(self, name: str) -> None:
        self.name = name

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        body = call.body
        prompt_tokens = await _prompt_tokens(call)
        created = int(time.time())
        payload: dict[str, Any]
        if call.endpoint == "embeddings":
            inputs = body.get("input")
            items = inputs if isinstance(inputs, list) else [inputs]
            dims = body.get("dimensions")
            size = dims if isinstance(dims, int) and 0 < dims <= 4096 else EMBEDDING_DIMENSIONS
            as_base64 = body.get("encoding_format") == "base64"
            payload = {
                "object": "list",
                "data": [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": _encoded(_embedding(str(x), size), as_base64),
                    }
                    for i, x in enumerate(items)
                ],
                "model": call.model,
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
            }
            return UpstreamReply(orjson.dumps(payload))
        text = _reply_text(body)
        completion_tokens = count_text(text, call.model)
        if call.endpoint == "chat":
            payload = {
                "id": _ident("chatcmpl", call),
                "object": "chat.completion",
                "created": created,
                "model": call.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": _usage(prompt_tokens, completion_tokens),
                "system_fingerprint": "fp_mock",
            }
        elif call.endpoint == "completions":
            payload = {
                "id": _ident("cmpl", call),
                "object": "text_completion",
                "created": created,
                "model": call.model,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
                "usage": _usage(prompt_tokens, completion_tokens),
            }
        else:
            payload = self._response_object(call, text, prompt_tokens, completion_tokens, created)
        return UpstreamReply(orjson.dumps(payload))

    def _response_object(
        self, call: UpstreamCall, text: str, prompt: int, completion: int, created: int
    ) -> dict[str, Any]:
        return {
            "id": _ident("resp", call),
            "object": "response",
            "created_at": created,
            "status": "completed",
            "model": call.model,
            "previous_response_id": call.body.get("previous_response_id"),
            "output": [
                {
                    "type": "message",
                    "id": _ident("msg", call),
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                    ],
                }
            ],
            "usage": {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": completion,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + completion,
            },
        }

    async def open_stream(self, call: UpstreamCall) -> AsyncIterator[bytes]:
        if call.endpoint == "embeddings":
            raise UpstreamClientError(400, "Embeddings cannot be streamed.", param="stream")
        if call.endpoint == "responses":
            return self._response_events(call)
        return self._events(call)

    async def _response_events(self, call: UpstreamCall) -> AsyncIterator[bytes]:
        """The Responses API's typed events, in OpenAI's order (see `_response_sequence`)."""
        text = _reply_text(call.body)
        prompt_tokens = await _prompt_tokens(call)
        final = self._response_object(
            call, text, prompt_tokens, count_text(text, call.model), int(time.time())
        )
        for number, (kind, fields) in enumerate(_response_sequence(final, text)):
            payload = orjson.dumps({"type": kind, "sequence_number": number, **fields})
            yield b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"

    async def _events(self, call: UpstreamCall) -> AsyncIterator[bytes]:
        text = _reply_text(call.body)
        prompt_tokens = await _prompt_tokens(call)
        is_chat = call.endpoint == "chat"
        base = {
            "id": _ident("chatcmpl" if is_chat else "cmpl", call),
            "object": "chat.completion.chunk" if is_chat else "text_completion",
            "created": int(time.time()),
            "model": call.model,
        }
        options = call.body.get("stream_options")
        include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        extra = {"usage": None} if include_usage else {}
        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            if is_chat:
                delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
            else:
                choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": None}
            yield b"data: " + orjson.dumps({**base, "choices": [choice], **extra}) + b"\n\n"
        final = (
            {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
            if is_chat
            else {"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}
        )
        yield b"data: " + orjson.dumps({**base, "choices": [final], **extra}) + b"\n\n"
        if include_usage:
            usage = _usage(prompt_tokens, count_text(text, call.model))
            yield b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n"
        yield DONE_EVENT

    async def close(self) -> None:
        return None
