"""Counting tokens offline (gateway/limits/token_count.py): the model's own encoding,
OpenAI's per-message overhead, and every endpoint's prompt field."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType

import pytest

from gateway.limits import token_count
from gateway.limits.token_count import (
    REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    TextCounter,
    count_messages,
    count_messages_with,
    count_messages_within,
    count_prompt,
    count_text,
    encoding,
    encoding_for,
    extra_texts,
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


@pytest.mark.parametrize(
    "prediction",
    [
        {"type": "content", "content": "Hello world"},
        {"type": "content", "content": [{"type": "text", "text": "Hello world"}]},
        {"type": "content", "content": [{"type": "text", "text": "Hello"}, " world"]},
    ],
)
def test_a_chat_prediction_is_billed_text(prediction: dict[str, object]) -> None:
    """Predicted Outputs: OpenAI bills rejected prediction tokens, so their text counts."""
    assert extra_texts("chat", {"prediction": prediction}) in (
        ["Hello world"],
        ["Hello", " world"],
    )
    bare = count_prompt("chat", {"messages": []}, "gpt-4o")
    with_it = count_prompt("chat", {"messages": [], "prediction": prediction}, "gpt-4o")
    assert with_it >= bare + 2


@pytest.mark.parametrize(
    "prediction", [None, "text", {"type": "content"}, {"content": 5}, {"content": [5, {}]}]
)
def test_a_prediction_without_text_counts_nothing(prediction: object) -> None:
    assert extra_texts("chat", {"prediction": prediction}) == []
    assert extra_texts("completions", {"prediction": {"content": "x"}}) == []


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


def test_the_memory_is_bounded_and_long_texts_are_not_kept() -> None:
    """The oldest text is forgotten first; a text too long to remember is counted, not kept."""
    counter = TextCounter(encoding("o200k_base"), texts_kept=4)
    for i in range(10):
        assert counter.count(f"text number {i}") == count_text(f"text number {i}", "gpt-4o")
    assert list(counter.remembered) == [f"text number {i}" for i in range(6, 10)]
    long = "y" * (token_count.REMEMBERED_CHARS + 1)
    assert counter.count(long) == count_text(long, "gpt-4o")
    assert long not in counter.remembered


def test_the_memory_is_bounded_by_characters_too() -> None:
    """Long texts (an agent's tool outputs) are kept while they fit the characters' bound,
    the oldest forgotten first; one larger than the whole bound is counted, never kept."""
    counter = TextCounter(encoding("o200k_base"), texts_kept=100, chars_kept=100)
    texts = [f"{i:02d}" + "z" * 38 for i in range(5)]  # 40 characters each
    for text in texts:
        assert counter.count(text) == count_text(text, "gpt-4o")
    assert list(counter.remembered) == texts[3:]  # 80 of 100 characters
    assert counter.count(texts[4]) == count_text(texts[4], "gpt-4o")  # remembered: no change
    assert list(counter.remembered) == texts[3:]
    huge = "w" * 101
    assert counter.count(huge) == count_text(huge, "gpt-4o")
    assert list(counter.remembered) == texts[3:]
    default = TextCounter(encoding("o200k_base"))
    output = "tool output line\n" * 2000  # ~34 KB, as an agent re-sends it every turn
    assert default.count(output) == count_text(output, "gpt-4o") and output in default.remembered


def test_counting_from_many_threads_keeps_the_bound_and_the_counts() -> None:
    """Long prompts are counted on worker threads while the loop counts short ones."""
    counter = TextCounter(encoding("o200k_base"), texts_kept=64)
    texts = [f"thread text {i} " * (i % 7 + 1) for i in range(400)]
    expected = [count_text(text, "gpt-4o") for text in texts]

    def count_all(offset: int) -> list[int]:
        order = texts[offset:] + texts[:offset]
        counts = [counter.count(text) for text in order]
        return counts[-offset:] + counts[:-offset] if offset else counts

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(count_all, range(0, 400, 50)))
    assert all(result == expected for result in results)
    assert len(counter.remembered) <= 64
    assert counter._chars == sum(map(len, counter.remembered))


def test_messages_within_a_bound_tokenize_only_new_text() -> None:
    """Remembered texts cost nothing against the bound; new text over it is not tokenized."""
    counter = TextCounter(encoding("o200k_base"))
    turns = [{"role": "user", "content": f"turn {i}: " + "words " * 150} for i in range(20)]
    assert count_messages_within(counter, turns, 2048) is None  # ~18 KB of new text
    assert counter.remembered == {}
    full = count_messages_with(counter, turns)
    assert full == count_messages(turns, "gpt-4o")
    assert count_messages_within(counter, turns, 0) == full  # all remembered now
    assert count_messages_within(counter, [*turns, {"content": "new"}], 3) == full + 3 + 1
    assert count_messages_within(counter, [*turns, {"content": "newer"}], 4) is None


def test_any_mapping_counts_as_a_dict_does() -> None:
    """Messages, parts and tool calls may be any Mapping, not only dicts from JSON."""
    part = {"type": "text", "text": "Hello"}
    function = {"name": "lookup", "arguments": '{"q": "x"}'}
    messages = [
        {"role": "user", "content": [part, "world"], "name": "ann"},
        {"tool_calls": [{"function": function}]},
    ]
    proxied = [
        MappingProxyType(
            {"role": "user", "content": [MappingProxyType(part), "world"], "name": "ann"}
        ),
        MappingProxyType(
            {"tool_calls": [MappingProxyType({"function": MappingProxyType(function)})]}
        ),
    ]
    assert count_messages(proxied, "gpt-4o") == count_messages(messages, "gpt-4o")
