"""Counting tokens offline (gateway/limits/token_count.py): the model's own encoding,
OpenAI's per-message overhead, and every endpoint's prompt field."""

from __future__ import annotations

import pytest

from gateway.limits import token_count
from gateway.limits.token_count import (
    REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    count_messages,
    count_prompt,
    count_text,
    encoding_for,
)


def test_encodings_follow_the_model_family() -> None:
    assert encoding_for("gpt-4o-mini").name == "o200k_base"
    assert encoding_for("openai/gpt-4.1").name == "o200k_base"
    assert encoding_for("gpt-3.5-turbo").name == "cl100k_base"
    assert encoding_for("llama-3.1-70b").name == "cl100k_base"  # the fallback


def test_text_counts_are_the_encodings_own() -> None:
    assert count_text("", "gpt-4o") == 0
    assert count_text("Hello world", "gpt-4o") == 2
    assert count_text("<|endoftext|>", "gpt-4o") > 1  # special tokens are text, not refused


def test_chat_messages_cost_their_overhead() -> None:
    messages = [{"role": "user", "content": "Hello world"}]
    assert count_messages(messages, "gpt-4o") == REPLY_PRIMING_TOKENS + TOKENS_PER_MESSAGE + 2


def test_multipart_content_and_tool_calls_are_counted() -> None:
    parts = [{"type": "text", "text": "Hello"}, {"type": "image_url", "image_url": {"url": "x"}}]
    call = {"function": {"name": "lookup", "arguments": '{"q": "x"}'}}
    messages = [{"role": "user", "content": parts}, {"role": "assistant", "tool_calls": [call]}]
    plain = count_messages([{"role": "user"}, {"role": "assistant"}], "gpt-4o")
    assert count_messages(messages, "gpt-4o") > plain + 1


@pytest.mark.parametrize(
    ("endpoint", "body", "expected"),
    [
        ("completions", {"prompt": "Hello world"}, 2),
        ("completions", {"prompt": ["Hello", "world"]}, 2),
        ("completions", {"prompt": [[1, 2, 3], [4]]}, 4),  # token ids count as themselves
        ("completions", {"prompt": None}, 0),
        ("embeddings", {"input": "Hello world"}, 2),
        ("embeddings", {"input": [1, 2, 3]}, 3),
        ("responses", {"input": "Hello world"}, 2),
        ("chat", {"messages": "not a list"}, REPLY_PRIMING_TOKENS),
    ],
)
def test_every_endpoints_prompt_field(
    endpoint: str, body: dict[str, object], expected: int
) -> None:
    assert count_prompt(endpoint, body, "gpt-4o") == expected


TEXTS = ["Hello world", "<|endoftext|> special", "こんにちは世界、元気ですか", "x" * 2048]


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-3.5-turbo"])
def test_a_remembered_count_is_the_encodings_own(model: str) -> None:
    for text in TEXTS:
        first = token_count.count_prompt_text(text, model)
        assert first == token_count.count_prompt_text(text, model) == count_text(text, model)


def test_each_encoding_remembers_its_own_count() -> None:
    text = "こんにちは世界、元気ですか"
    assert count_text(text, "gpt-4o") != count_text(text, "gpt-3.5-turbo")
    assert token_count.count_prompt_text(text, "gpt-4o") == count_text(text, "gpt-4o")
    assert token_count.count_prompt_text(text, "gpt-3.5-turbo") == count_text(text, "gpt-3.5-turbo")


def test_the_memory_is_bounded_and_long_texts_are_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(token_count, "_remembered", {})
    monkeypatch.setattr(token_count, "REMEMBERED_TEXTS", 4)
    for i in range(10):
        assert token_count.count_prompt_text(f"text number {i}", "gpt-4o") == count_text(
            f"text number {i}", "gpt-4o"
        )
    assert len(token_count._remembered) == 4
    assert ("o200k_base", "text number 9") in token_count._remembered
    assert ("o200k_base", "text number 0") not in token_count._remembered
    long = "y" * (token_count.REMEMBERED_CHARS + 1)
    assert token_count.count_prompt_text(long, "gpt-4o") == count_text(long, "gpt-4o")
    assert all(text != long for _, text in token_count._remembered)
