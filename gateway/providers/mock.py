"""The built-in `mock` provider: in-process, deterministic, offline.

It answers every endpoint in OpenAI's shapes, streams, and reports usage
counted with the same tokenizer the gateway uses, so a first request succeeds
with no network and no keys. The reply is derived from the prompt, so the same
request always gets the same answer; what it says (cut to the caller's cap, as
many choices as asked) is decided in mock_reply.py.
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
from gateway.limits.token_count import count_prompt, extra_texts
from gateway.providers.base import (
    DONE_EVENT,
    Endpoint,
    UpstreamCall,
    UpstreamClientError,
    UpstreamReply,
)
from gateway.providers.mock_reply import (
    MAX_CHOICES,
    Cut,
    choice_count,
    completion_prompts,
    cut_to_tokens,
    embedding_inputs,
    finish_reason,
    last_user_text,
    output_cap,
    reply_text,
    shown,
)

EMBEDDING_DIMENSIONS = 256


# A body with a list longer than this (messages, items, a message's parts) is measured
# on a thread too: the walk alone of half a million short messages takes a second.
INLINE_PARTS = 64


def _few_parts(body: dict[str, Any]) -> bool:
    """No list in the body, or in its messages, longer than INLINE_PARTS."""
    for value in body.values():
        if type(value) is list:
            if len(value) > INLINE_PARTS:
                return False
            for item in value:
                content = item.get("content") if type(item) is dict else None
                if type(content) is list and len(content) > INLINE_PARTS:
                    return False
    return True


async def _prompt_tokens(call: UpstreamCall) -> int:
    """The prompt's tokens; a large prompt (megabytes take seconds) is counted on a
    thread, as the gateway's own estimate does, so the event loop keeps serving."""
    body = call.body
    if _few_parts(body) and (
        prompt_chars(call.endpoint, body, extra_texts(call.endpoint, body)) <= INLINE_COUNT_CHARS
    ):
        return count_prompt(call.endpoint, body, call.model)
    return await asyncio.to_thread(count_prompt, call.endpoint, body, call.model)


def _answers(call: UpstreamCall) -> list[Cut]:
    """One reply per choice, in OpenAI's index order (prompt_index * n + i), each cut
    to the caller's cap. Refuses more than MAX_CHOICES before writing any."""
    body = call.body
    if call.endpoint == "completions":
        said = [shown(p) for p in completion_prompts(body.get("prompt", ""))]
    else:
        said = [last_user_text(body)]
    n = choice_count(body) if call.endpoint in ("chat", "completions") else 1
    if len(said) * n > MAX_CHOICES:
        raise UpstreamClientError(
            400,
            f"The mock provider writes at most {MAX_CHOICES} choices per request "
            f"(prompts x n); this one asks for {len(said) * n}.",
            param="n",
        )
    cap = output_cap(call.endpoint, body)
    cuts = [cut_to_tokens(reply_text(text), cap, call.model) for text in said]
    return [cut for cut in cuts for _ in range(n)]


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


def _pieces(text: str) -> list[str]:
    """A reply as its stream deltas: word by word, each after the first with its space."""
    return [word if i == 0 else " " + word for i, word in enumerate(text.split(" "))]


def _chunk_choice(is_chat: bool, index: int, piece: str, is_first: bool) -> dict[str, Any]:
    if not is_chat:
        return {"index": index, "text": piece, "logprobs": None, "finish_reason": None}
    delta = {"role": "assistant", "content": piece} if is_first else {"content": piece}
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}


def _final_choice(is_chat: bool, index: int, cut: Cut) -> dict[str, Any]:
    if is_chat:
        return {"index": index, "delta": {}, "logprobs": None, "finish_reason": finish_reason(cut)}
    return {"index": index, "text": "", "logprobs": None, "finish_reason": finish_reason(cut)}


def _response_sequence(final: dict[str, Any], text: str) -> list[tuple[str, dict[str, Any]]]:
    """OpenAI's event order for one text message, which the SDK's `responses.stream()`
    helper rebuilds the response from: created, in_progress, output_item.added,
    content_part.added, text deltas, output_text.done, content_part.done,
    output_item.done, then completed (or incomplete, when the cap cut the text)."""
    started = {
        **final,
        "status": "in_progress",
        "incomplete_details": None,
        "output": [],
        "usage": None,
    }
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
    for delta in _pieces(text):
        events.append(("response.output_text.delta", {**at, "delta": delta, "logprobs": []}))
    events += [
        ("response.output_text.done", {**at, "text": text, "logprobs": []}),
        ("response.content_part.done", {**at, "part": {**empty_part, "text": text}}),
        ("response.output_item.done", {"output_index": 0, "item": message}),
        (f"response.{final['status']}", {"response": final}),
    ]
    return events


class MockProvider:
    endpoints: frozenset[Endpoint] = frozenset({"chat", "completions", "embeddings", "responses"})

    def __init__(self, name: str) -> None:
        self.name = name

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        if call.endpoint == "embeddings":
            return UpstreamReply(orjson.dumps(await self._embeddings(call)))
        answers = _answers(call)
        prompt_tokens = await _prompt_tokens(call)
        completion_tokens = sum(cut.tokens for cut in answers)
        created = int(time.time())
        payload: dict[str, Any]
        if call.endpoint == "chat":
            payload = {
                "id": _ident("chatcmpl", call),
                "object": "chat.completion",
                "created": created,
                "model": call.model,
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": cut.text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": finish_reason(cut),
                    }
                    for i, cut in enumerate(answers)
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
                "choices": [
                    {
                        "index": i,
                        "text": cut.text,
                        "logprobs": None,
                        "finish_reason": finish_reason(cut),
                    }
                    for i, cut in enumerate(answers)
                ],
                "usage": _usage(prompt_tokens, completion_tokens),
            }
        else:
            payload = self._response_object(call, answers[0], prompt_tokens, created)
        return UpstreamReply(orjson.dumps(payload))

    async def _embeddings(self, call: UpstreamCall) -> dict[str, Any]:
        body = call.body
        prompt_tokens = await _prompt_tokens(call)
        dims = body.get("dimensions")
        size = dims if isinstance(dims, int) and 0 < dims <= 4096 else EMBEDDING_DIMENSIONS
        as_base64 = body.get("encoding_format") == "base64"
        return {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": _encoded(_embedding(str(x), size), as_base64),
                }
                for i, x in enumerate(embedding_inputs(body.get("input")))
            ],
            "model": call.model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }

    def _response_object(
        self, call: UpstreamCall, answer: Cut, prompt: int, created: int
    ) -> dict[str, Any]:
        status = "incomplete" if answer.is_cut else "completed"
        return {
            "id": _ident("resp", call),
            "object": "response",
            "created_at": created,
            "status": status,
            "incomplete_details": {"reason": "max_output_tokens"} if answer.is_cut else None,
            "model": call.model,
            "previous_response_id": call.body.get("previous_response_id"),
            "output": [
                {
                    "type": "message",
                    "id": _ident("msg", call),
                    "status": status,
                    "role": "assistant",
                    "content": [
                        {
                            "type": "output_text",
                            "text": answer.text,
                            "annotations": [],
                            "logprobs": [],
                        }
                    ],
                }
            ],
            "usage": {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": answer.tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + answer.tokens,
            },
        }

    async def open_stream(self, call: UpstreamCall) -> AsyncIterator[bytes]:
        if call.endpoint == "embeddings":
            raise UpstreamClientError(400, "Embeddings cannot be streamed.", param="stream")
        answers = _answers(call)  # refuses too many choices before the stream starts
        if call.endpoint == "responses":
            return self._response_events(call, answers[0])
        return self._events(call, answers)

    async def _response_events(self, call: UpstreamCall, answer: Cut) -> AsyncIterator[bytes]:
        """The Responses API's typed events, in OpenAI's order (see `_response_sequence`)."""
        prompt_tokens = await _prompt_tokens(call)
        final = self._response_object(call, answer, prompt_tokens, int(time.time()))
        for number, (kind, fields) in enumerate(_response_sequence(final, answer.text)):
            payload = orjson.dumps({"type": kind, "sequence_number": number, **fields})
            yield b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"

    async def _events(self, call: UpstreamCall, answers: list[Cut]) -> AsyncIterator[bytes]:
        """Chat or completions chunks, one choice each; with several choices their
        deltas interleave (word j of every choice, then word j + 1), as OpenAI's do."""
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
        pieces = [_pieces(cut.text) for cut in answers]
        for j in range(max(map(len, pieces))):
            for index, said in enumerate(pieces):
                if j < len(said):
                    choice = _chunk_choice(is_chat, index, said[j], j == 0)
                    yield b"data: " + orjson.dumps({**base, "choices": [choice], **extra}) + b"\n\n"
        for index, cut in enumerate(answers):
            final = _final_choice(is_chat, index, cut)
            yield b"data: " + orjson.dumps({**base, "choices": [final], **extra}) + b"\n\n"
        if include_usage:
            usage = _usage(prompt_tokens, sum(cut.tokens for cut in answers))
            yield b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n"
        yield DONE_EVENT

    async def close(self) -> None:
        return None
