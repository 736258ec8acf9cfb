"""An Azure OpenAI stream answering a whole request (gateway/providers/framing.py): the
whole answer names itself as the answer's chunks do, not as Azure's blank first chunk."""

from __future__ import annotations

import orjson

from gateway.providers.framing import whole_of_stream

BLANK = {"id": "", "object": "", "created": 0, "model": ""}
HEAD = {"id": "chatcmpl-AZ1", "object": "chat.completion.chunk", "created": 1733000000}
FILTERS = [{"prompt_index": 0, "content_filter_results": {}}]


def event(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def test_an_azure_stream_becomes_a_whole_answer_with_its_own_id() -> None:
    head = {**HEAD, "model": "gpt-4o-2024-08-06"}
    stream = b"".join(
        [
            event({**BLANK, "choices": [], "prompt_filter_results": FILTERS}),
            event({**head, "choices": [{"index": 0, "delta": {"content": "hi"}}]}),
            event({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            b"data: [DONE]\n\n",
        ]
    )
    whole = orjson.loads(whole_of_stream("chat", stream))
    assert (whole["id"], whole["created"], whole["model"]) == (
        "chatcmpl-AZ1",
        1733000000,
        "gpt-4o-2024-08-06",
    )
    assert whole["prompt_filter_results"] == FILTERS
    assert whole["choices"][0]["message"]["content"] == "hi"
