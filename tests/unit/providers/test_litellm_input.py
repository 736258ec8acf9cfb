"""Prompts as litellm can take them (gateway/providers/litellm_input.py)."""

from typing import Any

import pytest

from gateway.providers.base import UpstreamCall, UpstreamClientError
from gateway.providers.litellm_input import decoded, has_token_ids, one_prompt, text_inputs

HELLO_WORLD = [15339, 1917]  # "hello world" in cl100k_base, LangChain's and the SDK's fallback
HELLO_WORLD_O200K = [24912, 2375]  # the same text in o200k_base (gpt-4o's)
CLAUDE = "claude-3-5-haiku-20241022"


def refusal(call: Any) -> UpstreamClientError:
    with pytest.raises(UpstreamClientError) as raised:
        call()
    assert raised.value.status == 400 and raised.value.type == "invalid_request_error"
    return raised.value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (HELLO_WORLD, "hello world"),
        ([HELLO_WORLD, [15339]], ["hello world", "hello"]),
        (["hello", "world"], ["hello", "world"]),
    ],
)
def test_token_ids_read_as_the_text_they_encode(value, text):
    assert decoded("input", value, CLAUDE) == text


def test_a_gpt_4o_family_name_reads_its_ids_with_o200k():
    assert decoded("prompt", HELLO_WORLD_O200K, "gpt-4o-mini") == "hello world"


@pytest.mark.parametrize(
    ("value", "param"),
    [
        ([100_300], "prompt"),  # past cl100k_base's ids
        ([2**32], "prompt"),  # past what tiktoken reads at all
        ([-1], "prompt"),
        ([HELLO_WORLD, [15339, 100_300]], "prompt[1]"),
        ([HELLO_WORLD, [15339, "x"]], "prompt[1]"),
        ([HELLO_WORLD, [1.5]], "prompt[1]"),
        ([15339, "world"], "prompt[1]"),  # text and ids mixed
        (["hello", [15339]], "prompt[1]"),
        (["hello", None], "prompt[1]"),
        ([{"text": "hi"}], "prompt[0]"),
        ([True], "prompt[0]"),  # a boolean is no id
    ],
)
def test_what_no_encoding_reads_is_the_callers_400_naming_where(value, param):
    error = refusal(lambda: decoded("prompt", value, CLAUDE))
    assert error.param == param


def test_ids_of_another_encoding_say_which_the_model_reads():
    error = refusal(lambda: decoded("input", [[200_000]], CLAUDE))
    assert error.param == "input[0]" and "cl100k_base" in error.message


@pytest.mark.parametrize(
    ("value", "has_ids"),
    [([15339], True), ([[15339]], True), (["a", None], True), (["a", "b"], False), ([], False)],
)
def test_only_a_list_of_texts_needs_no_decoding(value, has_ids):
    assert has_token_ids(value) is has_ids


@pytest.mark.parametrize(("prompt", "one"), [("hi", "hi"), (["hi"], "hi")])
def test_one_prompt_goes_as_one_text(prompt, one):
    assert one_prompt(prompt, "anthropic") == one


@pytest.mark.parametrize("prompt", [["a", "b", "c"], ["a", "b"], []])
def test_a_batch_of_prompts_is_refused_naming_prompt(prompt):
    error = refusal(lambda: one_prompt(prompt, "gemini"))
    assert error.param == "prompt"


def call(endpoint: Any, **body: Any) -> UpstreamCall:
    return UpstreamCall(endpoint, {"model": CLAUDE, **body}, CLAUDE, False, "req-1")


async def test_a_call_with_token_ids_gets_their_texts():
    decoded_call = await text_inputs(call("embeddings", input=[HELLO_WORLD]), "gemini")
    assert decoded_call.body == {"model": CLAUDE, "input": ["hello world"]}
    completion = await text_inputs(call("completions", prompt=HELLO_WORLD), "anthropic")
    assert completion.body["prompt"] == "hello world"


async def test_a_batch_of_token_arrays_is_a_batch_too():
    with pytest.raises(UpstreamClientError) as raised:
        await text_inputs(call("completions", prompt=[HELLO_WORLD, HELLO_WORLD]), "anthropic")
    assert raised.value.param == "prompt"


async def test_an_embeddings_batch_of_texts_is_no_batch_to_refuse():
    """Embedding models answer one vector per input: nothing to decode, nothing refused."""
    plain = call("embeddings", input=["a", "b"])
    assert await text_inputs(plain, "gemini") is plain


async def test_a_call_without_lists_is_left_as_it_came():
    for plain in (call("completions", prompt="hi"), call("chat", messages=[])):
        assert await text_inputs(plain, "anthropic") is plain
