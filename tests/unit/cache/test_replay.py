"""Whole answer → SSE and SSE → whole answer (gateway/cache/replay.py), on bytes."""

from typing import Any

import orjson
import pytest

from gateway.cache.replay import StreamAssembler, replay
from gateway.sse import events_of, json_of

CHAT: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-2024-08-06",
    "system_fingerprint": "fp_1",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}
TOOLS: dict[str, Any] = {
    **CHAT,
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "{}"},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
}
TEXT: dict[str, Any] = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 1700000000,
    "model": "gpt-3.5-turbo-instruct",
    "choices": [{"text": "Once upon", "index": 0, "logprobs": None, "finish_reason": "length"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


def payloads(stream: bytes) -> list[Any]:
    return [json_of(event) for event in events_of(stream)]


def test_a_chat_answer_replays_as_openai_chunks_without_usage() -> None:
    """Role first, then content, then the finish reason, then [DONE]; no usage unasked."""
    stream = replay("chat", orjson.dumps(CHAT), include_usage=False)
    assert stream.endswith(b"data: [DONE]\n\n")
    chunks = payloads(stream)[:-1]
    head = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_1",
    }
    choice = {"index": 0, "logprobs": None, "finish_reason": None}
    assert chunks == [
        {
            **head,
            "choices": [{**choice, "delta": {"role": "assistant", "content": "", "refusal": None}}],
        },
        {**head, "choices": [{**choice, "delta": {"content": "Hello there"}}]},
        {**head, "choices": [{**choice, "delta": {}, "finish_reason": "stop"}]},
    ]
    assert b"usage" not in stream


def test_the_usage_chunk_comes_only_when_asked() -> None:
    """With include_usage: usage null on every chunk, then one usage chunk with no choices."""
    chunks = payloads(replay("chat", orjson.dumps(CHAT), include_usage=True))
    assert chunks[-1] is None  # [DONE]
    assert all(c["usage"] is None for c in chunks[:-2])
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"] == CHAT["usage"]


def test_tool_calls_replay_with_their_indexes() -> None:
    chunks = payloads(replay("chat", orjson.dumps(TOOLS), include_usage=False))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    calls = chunks[1]["choices"][0]["delta"]["tool_calls"]
    assert [(c["index"], c["id"], c["function"]["name"]) for c in calls] == [
        (0, "call_1", "get_weather"),
        (1, "call_2", "get_time"),
    ]
    assert chunks[2]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_text_completion_replays_as_text_completion_chunks() -> None:
    chunks = payloads(replay("completions", orjson.dumps(TEXT), include_usage=True))
    assert [c["object"] for c in chunks[:-1]] == ["text_completion"] * 3
    assert [c["choices"] for c in chunks[:2]] == [
        [{"text": "Once upon", "index": 0, "logprobs": None, "finish_reason": None}],
        [{"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}],
    ]
    assert chunks[2]["usage"] == TEXT["usage"] and chunks[2]["choices"] == []


@pytest.mark.parametrize("whole", [CHAT, TOOLS, TEXT], ids=["chat", "tools", "text"])
@pytest.mark.parametrize("include_usage", [True, False])
def test_replay_then_assemble_gives_the_answer_back(
    whole: dict[str, Any], include_usage: bool
) -> None:
    endpoint = "chat" if whole["object"] == "chat.completion" else "completions"
    stream = replay(endpoint, orjson.dumps(whole), include_usage=include_usage)
    assembler = StreamAssembler(endpoint)
    assert assembler.feed(stream).data == stream  # passed on untouched
    again = orjson.loads(assembler.answer() or b"null")
    expected = dict(whole)
    if not include_usage:
        del expected["usage"]
    if endpoint == "chat":
        expected["choices"] = [
            {
                **c,
                "message": {  # the nulls a stream does not carry (refusal's it does)
                    k: v
                    for k, v in c["message"].items()
                    if v is not None or k in ("content", "refusal")
                },
            }
            for c in whole["choices"]
        ]
    assert again == expected


def upstream_stream() -> list[bytes]:
    """A chat stream as OpenAI sends it: tool-call arguments and content in pieces."""
    head = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "m"}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps({**head, "choices": [choice], **extra}) + b"\n\n"

    call = {
        "index": 0,
        "id": "call_9",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }
    return [
        b": keep-alive\n\n",
        chunk({"role": "assistant", "content": "", "refusal": None}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        chunk({}, "tool_calls"),
        b"data: "
        + orjson.dumps(
            {
                **head,
                "choices": [],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            }
        )
        + b"\n\n",
        b"data: [DONE]\n\n",
    ]


ASSEMBLED = {
    "id": "chatcmpl-9",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello",
                "refusal": None,  # the first delta's, as OpenAI's whole answer has it
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a":1}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
}


def test_a_completed_stream_assembles_into_its_whole_answer() -> None:
    assembler = StreamAssembler("chat")
    for event in upstream_stream():
        assembler.feed(event)
    assert orjson.loads(assembler.answer() or b"null") == ASSEMBLED


def test_assembly_does_not_depend_on_how_events_are_grouped() -> None:
    """Providers hand over one or several whole events per chunk."""
    events = upstream_stream()
    for size in (2, 3, len(events)):
        assembler = StreamAssembler("chat")
        for start in range(0, len(events), size):
            assembler.feed(b"".join(events[start : start + size]))
        assert orjson.loads(assembler.answer() or b"null") == ASSEMBLED


@pytest.mark.parametrize(
    ("name", "events"),
    [
        ("cut before [DONE]", upstream_stream()[:-1]),
        ("cut before the finish reason", [*upstream_stream()[:7], b"data: [DONE]\n\n"]),
        ("nothing", [b"data: [DONE]\n\n"]),
        (
            "an error event",
            [
                *upstream_stream()[:3],
                b'data: {"error": {"message": "boom", "type": "api_error", "code": null}}\n\n',
                *upstream_stream()[3:],
            ],
        ),
        ("unreadable JSON", [*upstream_stream()[:3], b"data: {nope\n\n", *upstream_stream()[3:]]),
    ],
)
def test_an_incomplete_stream_is_not_stored(name: str, events: list[bytes]) -> None:
    assembler = StreamAssembler("chat")
    for event in events:
        assembler.feed(event)
    assert assembler.answer() is None, name


def test_other_endpoints_never_assemble_or_replay() -> None:
    assembler = StreamAssembler("responses")
    assembler.feed(b"event: response.completed\ndata: {}\n\n")
    assert assembler.answer() is None
    with pytest.raises(ValueError, match="not streamed"):
        replay("embeddings", b'{"object":"list","choices":[]}', include_usage=False)
    with pytest.raises(ValueError, match="not a whole answer"):
        replay("chat", b'{"error":{}}', include_usage=False)
