"""A stored answer crossing between whole and streamed (gateway/cache/replay.py): what a
message holds besides text and calls (annotations, audio) survives both ways, and a
replay for a team with output rules carries no logprobs."""

from typing import Any

import orjson
import pytest

from gateway.cache.replay import StreamAssembler, replay
from gateway.sse import events_of, json_of

CITATION = {
    "type": "url_citation",
    "url_citation": {"start_index": 0, "end_index": 5, "url": "https://x.test/", "title": "X"},
}
LOGPROBS = {"content": [{"token": "Hello", "logprob": -0.1, "bytes": [72], "top_logprobs": []}]}
HEAD = {"id": "chatcmpl-1", "created": 1700000000, "model": "gpt-4o-2024-08-06"}


def whole(message: dict[str, Any], logprobs: Any = None) -> dict[str, Any]:
    return {
        **HEAD,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message},
                "logprobs": logprobs,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def deltas(stream: bytes) -> list[dict[str, Any]]:
    chunks = [json_of(event) for event in events_of(stream)][:-1]
    return [choice for chunk in chunks for choice in chunk["choices"]]


def assembled(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    assembler = StreamAssembler("chat")
    for chunk in chunks:
        assembler.feed(b"data: " + orjson.dumps({**HEAD, **chunk}) + b"\n\n")
    assembler.feed(b"data: [DONE]\n\n")
    answer = assembler.answer()
    assert answer is not None
    parsed: dict[str, Any] = orjson.loads(answer)
    return parsed


def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def test_a_whole_answers_annotations_replay_in_a_delta() -> None:
    stored = whole({"content": "Hello", "annotations": [CITATION]})
    replayed = deltas(replay("chat", orjson.dumps(stored), include_usage=False))
    assert [d["delta"].get("annotations") for d in replayed] == [None, [CITATION], None]


def test_a_streams_annotations_assemble_into_the_message() -> None:
    """OpenAI sends them on a content delta (the last, here); the whole answer holds them."""
    chunks = [
        choice({"role": "assistant", "content": ""}),
        choice({"content": "Hel"}),
        choice({"content": "lo", "annotations": [CITATION]}),
        choice({}, "stop"),
    ]
    message = assembled(chunks)["choices"][0]["message"]
    assert message["content"] == "Hello"
    assert message["annotations"] == [CITATION]


def test_audio_survives_a_replay_and_its_assembly() -> None:
    """delta.audio as OpenAI streams it: base64 data and the transcript in parts."""
    audio = {"id": "audio_1", "data": "UklGRg==AAAA", "expires_at": 1700003600, "transcript": "Hi"}
    stored = whole({"content": None, "audio": audio})
    replayed = deltas(replay("chat", orjson.dumps(stored), include_usage=False))
    assert [d["delta"].get("audio") for d in replayed] == [None, audio, None]
    chunks = [
        choice(
            {"role": "assistant", "content": None, "audio": {"id": "audio_1", "transcript": "H"}}
        ),
        choice({"audio": {"transcript": "i"}}),
        choice({"audio": {"data": "UklGRg=="}}),
        choice({"audio": {"data": "AAAA"}}),
        choice({"audio": {"id": "audio_1", "expires_at": 1700003600}}),
        choice({}, "stop"),
    ]
    assert assembled(chunks)["choices"][0]["message"]["audio"] == audio


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_a_replay_without_logprobs_says_null_on_every_chunk(endpoint: str) -> None:
    """A team with output rules streams no logprobs: its replayed hits neither."""
    if endpoint == "chat":
        stored = whole({"content": "Hello"}, LOGPROBS)
    else:
        text_logprobs = {"tokens": ["Hello"], "token_logprobs": [-0.1]}
        stored = {
            **HEAD,
            "object": "text_completion",
            "choices": [
                {"text": "Hello", "index": 0, "logprobs": text_logprobs, "finish_reason": "stop"}
            ],
        }
    data = orjson.dumps(stored)
    kept = deltas(replay(endpoint, data, include_usage=False))  # type: ignore[arg-type]
    assert any(c["logprobs"] is not None for c in kept)
    dropped = deltas(replay(endpoint, data, include_usage=False, with_logprobs=False))  # type: ignore[arg-type]
    assert [c["logprobs"] for c in dropped] == [None] * len(kept)
    strip = "delta" if endpoint == "chat" else "text"
    assert [c[strip] for c in dropped] == [c[strip] for c in kept]
