"""An answer in the other framing than asked (gateway/providers/framing.py): converted
when it is a complete answer, refused (the attempt's failure) when it is not."""

from __future__ import annotations

import orjson
import pytest

from gateway.providers.framing import is_convertible, stream_of_whole, whole_of_stream
from gateway.sse import events_of, json_of

WHOLE = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi there"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


def test_a_whole_answer_streams_as_openai_chunks_with_its_usage_and_done() -> None:
    stream = stream_of_whole("chat", orjson.dumps(WHOLE))
    assert stream.endswith(b"data: [DONE]\n\n")
    chunks = [json_of(e) for e in events_of(stream)][:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "c1" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "hi there"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == WHOLE["usage"]


def test_a_stream_and_back_is_the_same_answer() -> None:
    back = orjson.loads(whole_of_stream("chat", stream_of_whole("chat", orjson.dumps(WHOLE))))
    assert back["choices"][0]["message"]["content"] == "hi there"
    assert back["choices"][0]["finish_reason"] == "stop"
    assert back["usage"] == WHOLE["usage"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"choices": "x"}',
        b'{"error": {"message": "overloaded"}}',
        b'{"choices": [1]}',
    ],
)
def test_what_is_no_whole_answer_does_not_stream(body: bytes) -> None:
    with pytest.raises(ValueError):
        stream_of_whole("chat", body)


@pytest.mark.parametrize(
    "stream",
    [
        b"",
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\n',
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}\n\n',
        b'data: {"error": {"message": "overloaded"}}\n\ndata: [DONE]\n\n',
        b"data: {broken\n\ndata: [DONE]\n\n",
    ],
    ids=["empty", "unfinished", "no-done", "error-event", "unreadable"],
)
def test_a_stream_that_did_not_complete_is_no_whole_answer(stream: bytes) -> None:
    with pytest.raises(ValueError):
        whole_of_stream("chat", stream)


def test_a_stream_without_its_last_blank_line_still_completes() -> None:
    stream = (
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}'
        b"\n\ndata: [DONE]"
    )
    assert orjson.loads(whole_of_stream("chat", stream))["choices"][0]["message"]["content"] == "x"


def test_only_chat_and_completions_convert() -> None:
    assert is_convertible("chat") and is_convertible("completions")
    assert not is_convertible("embeddings") and not is_convertible("responses")
