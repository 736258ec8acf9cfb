"""litellm's answers cut to OpenAI's fields (gateway/providers/litellm_fields.py)."""

import copy
from typing import Any

import pytest

from gateway.providers.litellm_fields import openai_fields

THINKING = {"type": "thinking", "thinking": "the card is 4111", "signature": "sig"}
EXTRAS = {"provider_specific_fields": {"thinking_blocks": [THINKING], "citations": ["c"]}}
TOP = {
    "id": "chatcmpl-1",
    "created": 1,
    "model": "claude",
    "system_fingerprint": None,
    "usage": {"prompt_tokens": 1, "cache_read_input_tokens": 0},
}


def message(**more: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": "Hi",
        "reasoning_content": "the card is 4111",
        "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"},
             "provider_specific_fields": {"thought_signature": "sig"}}
        ],
        "function_call": None,
        "refusal": None,
        "audio": {"transcript": "hi"},
        "annotations": [{"type": "url_citation"}],
        "images": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}],
        **more,
    }  # fmt: skip


def answer() -> dict[str, Any]:
    return {
        **TOP,
        "object": "chat.completion",
        "choices": [
            {"index": 0, "finish_reason": "stop", "logprobs": None, "enhancements": {},
             "message": message(thinking_blocks=[THINKING], reasoning_items=[{"x": 1}],
                                **EXTRAS), **EXTRAS}
        ],
        "vertex_ai_grounding_metadata": [{"webSearchQueries": ["4111"]}],
        "citations": ["c"],
        **EXTRAS,
    }  # fmt: skip


def chunk() -> dict[str, Any]:
    delta = message(thinking_blocks=[THINKING], **EXTRAS)
    return {
        **TOP,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "finish_reason": None, "logprobs": None, "delta": delta}],
        "provider_specific_fields": None,
        "citations": None,
    }


def test_a_whole_answer_keeps_openais_fields_and_reasoning_content_only():
    body = openai_fields("chat", answer(), is_chunk=False)
    assert set(body) == {"id", "object", "created", "model", "system_fingerprint", "usage",
                         "choices"}  # fmt: skip
    choice = body["choices"][0]
    assert set(choice) == {"index", "finish_reason", "logprobs", "message"}
    assert choice["message"] == message(tool_calls=[
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ])  # fmt: skip
    assert body["usage"] == TOP["usage"]  # usage is counts: as it came


def test_a_chunk_keeps_openais_fields_and_reasoning_content_only():
    body = openai_fields("chat", chunk(), is_chunk=True)
    assert set(body) == {"id", "object", "created", "model", "system_fingerprint", "usage",
                         "choices"}  # fmt: skip
    delta = body["choices"][0]["delta"]
    assert "thinking_blocks" not in delta and "provider_specific_fields" not in delta
    assert delta["reasoning_content"] == "the card is 4111"
    assert delta["tool_calls"][0] == {
        "id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}
    }  # fmt: skip


def test_no_thinking_text_or_signature_is_left_anywhere():
    for body, is_chunk in ((answer(), False), (chunk(), True)):
        left = repr(openai_fields("chat", body, is_chunk=is_chunk))
        assert "sig" not in left and "thinking" not in left and "citations" not in left
        assert left.count("4111") == 1  # reasoning_content's, which output rules read


def test_an_error_chunk_keeps_its_error():
    error = {"error": {"message": "overloaded", "type": "x"}, "provider_specific_fields": {}}
    assert openai_fields("chat", error, is_chunk=True) == {"error": error["error"]}


def test_a_completion_choice_keeps_openais_four_fields():
    choice = {"index": 0, "text": "Hi", "logprobs": None, "finish_reason": None,
              "reasoning_content": "the card is 4111"}  # fmt: skip
    for is_chunk in (False, True):
        body = openai_fields(
            "completions", {**TOP, "object": "text_completion", "choices": [dict(choice)]},
            is_chunk=is_chunk,
        )  # fmt: skip
        assert body["choices"] == [{"index": 0, "text": "Hi", "logprobs": None,
                                    "finish_reason": None}]  # fmt: skip


def test_embeddings_go_as_they_come():
    body = {"object": "list", "data": [{"embedding": [0.5], "index": 0}], "model": "m",
            "usage": {"prompt_tokens": 1}, "provider_specific_fields": None}  # fmt: skip
    assert openai_fields("embeddings", copy.deepcopy(body), is_chunk=False) == body


@pytest.mark.parametrize(
    "body",
    [
        {"choices": None},
        {"choices": [None, "x", {"message": None}, {"message": {"tool_calls": None}}]},
        {"choices": [{"delta": {"tool_calls": [None, {"index": 0, "x": 1}]}}]},
    ],
)
def test_odd_shapes_are_left_alone_not_raised_on(body):
    openai_fields("chat", body, is_chunk=True)
    openai_fields("chat", body, is_chunk=False)


def test_a_clean_answer_is_not_copied():
    body = {**TOP, "object": "chat.completion", "choices": [{"index": 0, "message": message()}]}
    kept = body["choices"][0]["message"]
    assert openai_fields("chat", body, is_chunk=False)["choices"][0]["message"] is kept
