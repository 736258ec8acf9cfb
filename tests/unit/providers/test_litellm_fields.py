"""litellm's answers cut to OpenAI's fields (gateway/providers/litellm_fields.py)."""

import copy
from typing import Any

import pytest

from gateway.providers.litellm_fields import caller_message, openai_fields

THINKING = {"type": "thinking", "thinking": "the card is 4111", "signature": "sig"}
EXTRAS = {"provider_specific_fields": {"thinking_blocks": [THINKING], "citations": ["c"]}}
TOP = {
    "id": "chatcmpl-1",
    "created": 1,
    "model": "claude",
    "system_fingerprint": None,
    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
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
    assert body["usage"] == TOP["usage"]  # OpenAI's counts: as they came


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


# litellm 1.110's usage of an Anthropic answer that wrote 5 tokens to the prompt cache
# and read 4 from it (its dump, as the probe saw it), with a list price of its own.
LITELLM_USAGE = {
    "completion_tokens": 3, "prompt_tokens": 21, "total_tokens": 24,
    "completion_tokens_details": {
        "accepted_prediction_tokens": None, "audio_tokens": None, "reasoning_tokens": 0,
        "rejected_prediction_tokens": None, "text_tokens": 3, "image_tokens": None,
        "video_tokens": None,
    },
    "prompt_tokens_details": {
        "audio_tokens": None, "cache_write_tokens": 5, "cached_tokens": 4, "image_tokens": None,
        "text_tokens": 12, "video_tokens": None, "initial_prompt_tokens": None,
        "cache_creation_tokens": 5,
    },
    "cache_creation_input_tokens": 5, "cache_read_input_tokens": 4, "cost": 0.000215,
    "iterations": None, "inference_geo": None, "speed": None, "service_tier": None,
}  # fmt: skip
OPENAI_USAGE = {  # OpenAI's detail keys with a count (its types'), no litellm nulls
    "completion_tokens": 3, "prompt_tokens": 21, "total_tokens": 24,
    "completion_tokens_details": {"reasoning_tokens": 0, "text_tokens": 3},
    "prompt_tokens_details": {"cache_write_tokens": 5, "cached_tokens": 4, "text_tokens": 12},
    "cache_creation_input_tokens": 5,  # billed from (usage_from_report)
}  # fmt: skip


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
@pytest.mark.parametrize("is_chunk", [False, True])
def test_usage_keeps_openais_counts_and_the_cache_writes_billed(endpoint, is_chunk):
    body = {**TOP, "choices": [], "usage": copy.deepcopy(LITELLM_USAGE)}
    assert openai_fields(endpoint, body, is_chunk=is_chunk)["usage"] == OPENAI_USAGE


def test_details_with_no_count_go_whole():
    """A chunk's all-null details (litellm's) leave no empty or null object behind."""
    usage = {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3,
             "completion_tokens_details": {"accepted_prediction_tokens": None,
                                           "rejected_prediction_tokens": None},
             "prompt_tokens_details": None}  # fmt: skip
    body = openai_fields("chat", {**TOP, "choices": [], "usage": usage}, is_chunk=True)
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}


def test_usage_without_cache_writes_has_no_anthropic_field():
    usage = {**copy.deepcopy(LITELLM_USAGE), "cache_creation_input_tokens": 0}
    body = openai_fields("chat", {**TOP, "choices": [], "usage": usage}, is_chunk=False)
    assert "cache_creation_input_tokens" not in body["usage"]


def test_the_billing_reads_the_same_usage_after_the_filter():
    """The gateway charges what litellm reported: cached reads and cache writes too."""
    from gateway.usage.usage import usage_from_report

    body = {**TOP, "choices": [], "usage": copy.deepcopy(LITELLM_USAGE)}
    kept = openai_fields("chat", body, is_chunk=False)["usage"]
    assert usage_from_report(kept) == usage_from_report(LITELLM_USAGE)


def test_an_embeddings_usage_keeps_openais_two_counts():
    usage = {"prompt_tokens": 4, "completion_tokens": 0, "total_tokens": 4, "cost": 1e-06,
             "prompt_tokens_details": {"text_tokens": 4}}  # fmt: skip
    body = openai_fields("embeddings", {"object": "list", "usage": usage}, is_chunk=False)
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


# What litellm raised for a chat of a system message alone (Anthropic), as its `message`.
SYSTEM_ONLY = (
    "litellm.BadRequestError: AnthropicException - litellm.BadRequestError: Anthropic requires "
    "at least one non-system message. Either provide one, or set `litellm.modify_params = "
    "True` // `litellm_settings::modify_params: True` to add the dummy user message - "
    "{'role': 'user', 'content': 'Please continue.'}.\nReceived Messages=[{'role': "
    "'system', 'content': 'x'}]"
)


@pytest.mark.parametrize(
    ("raw", "relayed"),
    [
        (SYSTEM_ONLY, "Anthropic requires at least one non-system message."),
        ("litellm.BadRequestError: AnthropicException - Error: Image URL download is "
         "disabled (MAX_IMAGE_URL_DOWNLOAD_SIZE_MB=0). url=//h/x.png Received Messages=[{'role"
         "': 'user', 'content': 'my secret plan'}]", "Error: Image URL download is disabled "
                                                     "(MAX_IMAGE_URL_DOWNLOAD_SIZE_MB=0). "
                                                     "url=//h/x.png"),
        ("file_data and file_id cannot both be None. Got={'type': 'file', 'file': {}}",
         "file_data and file_id cannot both be None."),
        ("litellm.BadRequestError: Invalid value: 3.5 is too big.",
         "Invalid value: 3.5 is too big."),
        ("BedrockException BadRequestError - The model is retired. Handle with "
         "`litellm.BadRequestError`.", "The model is retired."),
        ("messages: text content blocks must be non-empty", "messages: text content blocks "
                                                             "must be non-empty"),
        ("Set litellm.drop_params=True to drop it.", ""),
    ],
)  # fmt: skip
def test_a_relayed_refusal_keeps_the_providers_reason_not_litellms(raw, relayed):
    assert caller_message(raw) == relayed


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


def test_a_whole_answer_s_choice_without_logprobs_says_null_as_openai_s_does():
    """A translated provider's choice has no `logprobs` key (probe p19): OpenAI's has one,
    null when there are none, and a client reads `choice.logprobs.content`."""
    raw = answer()
    del raw["choices"][0]["logprobs"]
    body = openai_fields("chat", raw, is_chunk=False)
    assert "logprobs" in body["choices"][0] and body["choices"][0]["logprobs"] is None
