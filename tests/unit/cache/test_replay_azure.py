"""Azure OpenAI's streams through the cache's assembler and replay (gateway/cache/replay.py):
a first chunk with `id: ""`, `model: ""`, `created: 0` (the prompt's filter results), and
content filter results on the choices."""

from typing import Any

import orjson
import pytest

from gateway.cache.replay import StreamAssembler, replay
from gateway.sse import events_of, json_of

PROMPT_FILTERS = [
    {
        "prompt_index": 0,
        "content_filter_results": {
            "hate": {"filtered": False, "severity": "safe"},
            "jailbreak": {"filtered": False, "detected": False},
        },
    }
]
SAFE = {"filtered": False, "severity": "safe"}
HEAD = {
    "id": "chatcmpl-AZ123",
    "created": 1733000000,
    "model": "gpt-4o-2024-08-06",
    "system_fingerprint": "fp_az",
}
USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def azure_chat_stream() -> list[bytes]:
    """A chat stream as Azure OpenAI sends it: the prompt's filter results on a blank
    chunk, `content_filter_results` on each choice, an asynchronous filter's annotation
    (blank again) after the finish reason, the usage chunk, [DONE]."""
    head = {**HEAD, "object": "chat.completion.chunk"}
    blank = {"id": "", "object": "", "created": 0, "model": ""}

    def chunk(delta: dict[str, Any], filters: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return event({**head, "choices": [{**choice, "content_filter_results": filters}]})

    annotation = {"index": 0, "finish_reason": None, "content_filter_results": {"sexual": SAFE}}
    return [
        event({**blank, "choices": [], "prompt_filter_results": PROMPT_FILTERS}),
        chunk({"role": "assistant", "content": "", "refusal": None}, {}),
        chunk({"content": "Hel"}, {"hate": SAFE}),
        chunk({"content": "lo"}, {"hate": SAFE, "violence": SAFE}),
        chunk({}, {}, "stop"),
        event({**blank, "choices": [annotation]}),
        event({**head, "choices": [], "usage": USAGE}),
        b"data: [DONE]\n\n",
    ]


AZURE_CHAT: dict[str, Any] = {
    **HEAD,
    "object": "chat.completion",
    "prompt_filter_results": PROMPT_FILTERS,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
            "content_filter_results": {"hate": SAFE, "violence": SAFE, "sexual": SAFE},
        }
    ],
    "usage": USAGE,
}


def assembled(endpoint: Any, events: list[bytes]) -> Any:
    assembler = StreamAssembler(endpoint)
    for piece in events:
        assembler.feed(piece)
    return orjson.loads(assembler.answer() or b"null")


def test_an_azure_stream_assembles_with_its_own_id_model_and_created() -> None:
    """The whole answer carries the answer's id, model, created and fingerprint, not the
    blank filter chunk's, and Azure's filter results where its whole answer has them."""
    assert assembled("chat", azure_chat_stream()) == AZURE_CHAT


@pytest.mark.parametrize("size", [2, 3, 8])
def test_an_azure_stream_assembles_however_its_events_are_grouped(size: int) -> None:
    events = azure_chat_stream()
    grouped = [b"".join(events[start : start + size]) for start in range(0, len(events), size)]
    assert assembled("chat", grouped) == AZURE_CHAT


def test_an_azure_completions_stream_assembles_with_its_own_head() -> None:
    head = {"id": "cmpl-AZ1", "object": "text_completion", "created": 1733000000}
    head["model"] = "gpt-35-turbo-instruct"
    blank = {"id": "", "object": "", "created": 0, "model": ""}
    piece = {"index": 0, "logprobs": None, "content_filter_results": {"hate": SAFE}}
    events = [
        event({**blank, "choices": [], "prompt_filter_results": PROMPT_FILTERS}),
        event({**head, "choices": [{**piece, "text": "Once", "finish_reason": None}]}),
        event({**head, "choices": [{**piece, "text": " upon", "finish_reason": "length"}]}),
        b"data: [DONE]\n\n",
    ]
    assert assembled("completions", events) == {
        **head,
        "prompt_filter_results": PROMPT_FILTERS,
        "choices": [
            {
                "text": "Once upon",
                "index": 0,
                "logprobs": None,
                "finish_reason": "length",
                "content_filter_results": {"hate": SAFE},
            }
        ],
    }


def test_a_stream_that_never_names_itself_keeps_its_blank_head() -> None:
    """Blank values are kept when no chunk has better: the field is not dropped."""
    blank = {"id": "", "object": "", "created": 0, "model": ""}
    choice = {"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}
    whole = assembled("chat", [event({**blank, "choices": [choice]}), b"data: [DONE]\n\n"])
    assert (whole["id"], whole["created"], whole["model"]) == ("", 0, "")


@pytest.mark.parametrize("include_usage", [True, False])
def test_an_azure_answer_replays_as_azure_streams_it(include_usage: bool) -> None:
    """The prompt's filter results open the replay on a chunk without choices (with the
    answer's id, model and created); the choice's results ride on its text chunk."""
    stream = replay("chat", orjson.dumps(AZURE_CHAT), include_usage=include_usage)
    chunks = [json_of(e) for e in events_of(stream)][:-1]
    assert all(
        (c["id"], c["created"], c["model"]) == (HEAD["id"], HEAD["created"], HEAD["model"])
        for c in chunks
    )
    assert chunks[0]["choices"] == [] and chunks[0]["prompt_filter_results"] == PROMPT_FILTERS
    text = [c["choices"][0] for c in chunks[1:] if c["choices"] and c["choices"][0]["delta"]]
    assert [c["delta"].get("content") for c in text] == ["", "Hello"]
    assert text[-1]["content_filter_results"] == AZURE_CHAT["choices"][0]["content_filter_results"]
    expected = dict(AZURE_CHAT)
    if not include_usage:
        del expected["usage"]
    assert assembled("chat", [stream]) == expected  # and back: nothing lost


def test_a_text_answer_replays_its_filter_results() -> None:
    whole = {
        **HEAD,
        "object": "text_completion",
        "prompt_filter_results": PROMPT_FILTERS,
        "choices": [
            {
                "text": "Once",
                "index": 0,
                "logprobs": None,
                "finish_reason": "stop",
                "content_filter_results": {"hate": SAFE},
            }
        ],
    }
    stream = replay("completions", orjson.dumps(whole), include_usage=False)
    assert assembled("completions", [stream]) == whole
