"""An answer in the other framing than asked: a whole JSON answer to a stream request
(an OpenAI-compatible server that ignores `stream: true`), or a stream to a whole
request. Pure byte work; no I/O.

The answer is complete and billed either way, so it is served, converted as the
response cache converts (cache/replay.py): a whole answer replayed as OpenAI's chunks
(with its usage chunk: the stream steps strip it for a client that did not ask), a
completed stream assembled into the whole answer. Only chat and completions, the
endpoints both framings exist for; anything that does not convert is the attempt's
failure, as before.
"""

from __future__ import annotations

import orjson

from gateway.cache.replay import STREAMABLE, StreamAssembler, replay
from gateway.providers.base import Endpoint
from gateway.providers.error_answer import missing_answer
from gateway.sse import EventSplitter

EVENT_STREAM = "text/event-stream"
JSON_TYPES = ("application/json",)


def is_convertible(endpoint: Endpoint) -> bool:
    return endpoint in STREAMABLE


def stream_of_whole(endpoint: Endpoint, body: bytes) -> bytes:
    """The SSE stream (ending in `[DONE]`, usage chunk included) of a whole answer;
    ValueError when `body` is no whole answer of `endpoint` (not JSON, an error, no
    choices)."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("the answer is not JSON") from None
    if not isinstance(answer, dict) or answer.get("error"):
        raise ValueError("the answer is no answer")
    missing = missing_answer(endpoint, answer)
    if missing is not None:
        raise ValueError(missing)
    try:
        return replay(endpoint, body, include_usage=True)
    except (ValueError, TypeError, AttributeError, KeyError) as error:  # a malformed choice
        raise ValueError(f"the answer cannot be streamed: {type(error).__name__}") from None


def whole_of_stream(endpoint: Endpoint, body: bytes) -> bytes:
    """The whole answer a completed SSE stream makes; ValueError when it did not
    complete (no `[DONE]`, a choice unfinished), held an error event or an unreadable one."""
    splitter = EventSplitter()
    assembler = StreamAssembler(endpoint)
    assembler.feed(splitter.feed(body))
    tail = splitter.tail()
    if tail is not None:
        assembler.feed(tail)
    answer = assembler.answer()
    if answer is None:
        raise ValueError("the stream did not complete")
    return answer
