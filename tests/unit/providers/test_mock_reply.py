"""What the built-in mock answers: its reply cut to a cap, its choices and inputs."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.limits.token_count import count_text
from gateway.providers.mock_reply import (
    Cut,
    choice_count,
    completion_prompts,
    cut_to_tokens,
    embedding_inputs,
    finish_reason,
    output_cap,
    reply_text,
)

MODELS = ["mock-1", "gpt-4o-mini"]  # cl100k_base and o200k_base


def test_the_reply_echoes_what_was_said():
    assert reply_text("ping") == "This is the mock provider. You said: ping"
    assert reply_text("  ") == "This is the mock provider."


def test_a_reply_within_its_cap_is_whole():
    """No cap, or a cap it fits in: the same text, its count, finish_reason stop."""
    text = "This is the mock provider. You said: ping"
    for cap in (None, count_text(text, "mock-1"), 4096):
        cut = cut_to_tokens(text, cap, "mock-1")
        assert cut == Cut(text, count_text(text, "mock-1"), is_cut=False)
        assert finish_reason(cut) == "stop"


def test_a_cap_of_three_keeps_three_tokens():
    cut = cut_to_tokens("This is the mock provider. You said: ping", 3, "mock-1")
    assert cut == Cut("This is the", 3, is_cut=True)
    assert finish_reason(cut) == "length"


def test_a_cap_of_zero_writes_nothing():
    """Completions allow max_tokens 0 (with echo it only scores the prompt)."""
    assert cut_to_tokens("This is the mock provider.", 0, "mock-1") == Cut("", 0, is_cut=True)
    assert cut_to_tokens("", 0, "mock-1") == Cut("", 0, is_cut=False)


def test_a_cut_never_splits_a_character():
    """A token that holds half of a character's bytes is dropped, not shown as U+FFFD."""
    text = "You said: 😀😀😀 日本語のテキスト"
    for cap in range(1, count_text(text, "mock-1") + 1):
        cut = cut_to_tokens(text, cap, "mock-1")
        assert "\ufffd" not in cut.text
        assert text.startswith(cut.text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200), cap=st.integers(min_value=0, max_value=80))
@pytest.mark.parametrize("model", MODELS)
def test_a_cut_reply_fits_its_cap_and_reports_its_own_count(model, text, cap):
    """Any text, any cap: the tokens reported are the text's own count and never exceed
    the cap; the text is a prefix of the reply; it is cut exactly when the reply is longer."""
    cut = cut_to_tokens(text, cap, model)
    assert cut.tokens == count_text(cut.text, model)
    assert cut.tokens <= cap
    assert text.startswith(cut.text)
    assert cut.is_cut == (count_text(text, model) > cap)
    assert (finish_reason(cut) == "length") == cut.is_cut
    if not cut.is_cut:
        assert cut.text == text


@pytest.mark.parametrize(
    ("endpoint", "body", "cap"),
    [
        ("chat", {}, None),
        ("chat", {"max_tokens": 3}, 3),
        ("chat", {"max_completion_tokens": 5}, 5),
        ("chat", {"max_tokens": 7, "max_completion_tokens": 5}, 5),
        ("chat", {"max_output_tokens": 5}, None),  # another endpoint's: OpenAI ignores it
        ("completions", {"max_tokens": 0}, 0),
        ("completions", {"max_completion_tokens": 4}, None),
        ("responses", {"max_output_tokens": 16}, 16),
        ("responses", {"max_tokens": 16}, None),
        ("embeddings", {"max_tokens": 16}, None),
    ],
)
def test_the_cap_is_the_endpoints_own_field(endpoint, body, cap):
    assert output_cap(endpoint, body) == cap


@pytest.mark.parametrize(("body", "n"), [({}, 1), ({"n": None}, 1), ({"n": 3}, 3), ({"n": 2.0}, 2)])
def test_choice_count_is_n(body, n):
    assert choice_count(body) == n


@pytest.mark.parametrize(
    ("prompt", "prompts"),
    [
        ("hi", ["hi"]),
        (None, [None]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]]),  # one tokenized prompt
        ([[1, 2], [3]], [[1, 2], [3]]),  # two tokenized prompts
        (["a", 7], ["a"]),  # as limits/estimate.py counts a mixed list: one prompt
    ],
)
def test_completion_prompts_are_one_per_string_or_token_list(prompt, prompts):
    assert completion_prompts(prompt) == prompts


@pytest.mark.parametrize(
    ("value", "inputs"),
    [
        ("hi", ["hi"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]]),  # one tokenized input
        ([[1, 2], [3]], [[1, 2], [3]]),  # two tokenized inputs
    ],
)
def test_a_flat_token_list_is_one_embedding_input(value, inputs):
    assert embedding_inputs(value) == inputs
