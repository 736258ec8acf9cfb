"""Counting tokens offline (gateway/limits/token_count.py): the model's own encoding,
OpenAI's per-message overhead, and every endpoint's prompt field."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.limits import token_count
from gateway.limits.estimate import dearest_cost, estimate_inline, estimate_now
from gateway.limits.token_count import (
    IMAGE_TOKENS,
    LOW_DETAIL_IMAGE_TOKENS,
    PIECE_CHARS,
    REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    TextCounter,
    count_messages,
    count_messages_with,
    count_messages_within,
    count_prompt,
    count_text,
    counter_for,
    encoded_length,
    encoding,
    encoding_for,
    extra_texts,
    image_allowance,
)
from gateway.policy.compiled import Deployment, ModelRoute, RoutingConfig
from gateway.providers.base import Endpoint
from gateway.usage.pricing import PriceSource, UnitPrices
from gateway.usage.usage import Usage


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
    role = count_text("user", "gpt-4o")
    assert (
        count_messages(messages, "gpt-4o") == REPLY_PRIMING_TOKENS + TOKENS_PER_MESSAGE + role + 2
    )


# OpenAI cookbook, "How to count tokens with tiktoken": the prompt_tokens the API reports for
# these messages (names included) are 124 on gpt-4o and gpt-4o-mini and 129 on gpt-4 and
# gpt-3.5-turbo; for the API reference's "Say this is a test!", 13.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more time to touch base on opportunities for "
        "increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]


@pytest.mark.parametrize(
    ("model", "prompt_tokens"),
    [("gpt-4o", 124), ("gpt-4o-mini", 124), ("gpt-4", 129), ("gpt-3.5-turbo", 129)],
)
def test_chat_counts_match_what_the_api_reports(model: str, prompt_tokens: int) -> None:
    assert count_messages(COOKBOOK_MESSAGES, model) == prompt_tokens


def test_a_one_line_prompt_counts_its_role() -> None:
    messages = [{"role": "user", "content": "Say this is a test!"}]
    assert count_messages(messages, "gpt-4o") == 13


def test_an_assistant_refusal_is_counted() -> None:
    plain = count_messages([{"role": "assistant"}], "gpt-4o")
    refused = [{"role": "assistant", "refusal": "I can't help with that request."}]
    assert count_messages(refused, "gpt-4o") == plain + count_text(refused[0]["refusal"], "gpt-4o")


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


# Images: an estimate counts each image part at OpenAI's worst case for gpt-4o-class
# models (85 tokens at detail "low", else 85 + 170 x 8 tiles); the text count does not.
DATA_URL = "data:image/png;base64," + "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB" * 32_768  # 1 MiB


def chat_image(detail: str | None, url: str = "https://example.com/a.png") -> dict[str, Any]:
    image = {"url": url} if detail is None else {"url": url, "detail": detail}
    return {"type": "image_url", "image_url": image}


def input_image(detail: str | None, url: str = "https://example.com/a.png") -> dict[str, Any]:
    part = {"type": "input_image", "image_url": url}
    return part if detail is None else {**part, "detail": detail}


def test_the_image_allowance_is_gpt_4os_documented_worst_case() -> None:
    assert LOW_DETAIL_IMAGE_TOKENS == 85
    assert IMAGE_TOKENS == 85 + 170 * 8 == 1445


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        (chat_image(None), IMAGE_TOKENS),
        (chat_image("auto"), IMAGE_TOKENS),
        (chat_image("high"), IMAGE_TOKENS),
        (chat_image("low"), LOW_DETAIL_IMAGE_TOKENS),
        (chat_image("low", DATA_URL), LOW_DETAIL_IMAGE_TOKENS),
        ({"type": "image_url", "image_url": "https://example.com/a.png"}, IMAGE_TOKENS),
        ({"type": "image_url"}, IMAGE_TOKENS),
        (input_image(None), IMAGE_TOKENS),
        (input_image("auto"), IMAGE_TOKENS),
        (input_image("high"), IMAGE_TOKENS),
        (input_image("low"), LOW_DETAIL_IMAGE_TOKENS),
        ({"type": "input_image", "file_id": "f", "detail": "low"}, LOW_DETAIL_IMAGE_TOKENS),
        ({"type": "computer_screenshot", "image_url": DATA_URL}, IMAGE_TOKENS),
        (MappingProxyType(chat_image("low")), LOW_DETAIL_IMAGE_TOKENS),
        ({"type": "text", "text": "hi"}, 0),
        ({"type": "input_text", "text": "hi"}, 0),
        ({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}, 0),
        ({"type": "file", "file": {"file_data": DATA_URL}}, 0),
        ({"type": "input_file", "file_data": DATA_URL}, 0),
        # No type: not a part OpenAI reads as an image.
        ({"image_url": {"url": "x"}}, 0),
        ({}, 0),
    ],
)
def test_each_image_part_has_its_allowance(part: dict[str, Any], expected: int) -> None:
    assert image_allowance(part) == expected


def user(*parts: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(parts)}


CHAT_HI = {"type": "text", "text": "Hi"}
INPUT_HI = {"type": "input_text", "text": "Hi"}
TOOL_OUTPUT = {"type": "function_call_output", "call_id": "c"}
COMPUTER_OUTPUT = {"type": "computer_call_output", "call_id": "d"}
SCREENSHOT = {"type": "computer_screenshot", "image_url": DATA_URL}


@pytest.mark.parametrize(
    ("endpoint", "bare", "pictured", "allowance"),
    [
        (
            "chat",
            {"messages": [user(CHAT_HI)]},
            {"messages": [user(CHAT_HI, chat_image(None, DATA_URL), chat_image("low", DATA_URL))]},
            IMAGE_TOKENS + LOW_DETAIL_IMAGE_TOKENS,
        ),
        (
            "responses",
            {"input": [user(INPUT_HI)]},
            {"input": [user(INPUT_HI, input_image("high"))]},
            IMAGE_TOKENS,
        ),
        (  # an image item of its own in the input list (overhead as any item's)
            "responses",
            {"input": [user(INPUT_HI), {"type": "item_reference", "id": "x"}]},
            {"input": [user(INPUT_HI), input_image("low", DATA_URL)]},
            LOW_DETAIL_IMAGE_TOKENS,
        ),
        (  # a tool's output with an image in it, and a computer call's screenshot
            "responses",
            {"input": [{**TOOL_OUTPUT, "output": [INPUT_HI]}, {**COMPUTER_OUTPUT, "output": {}}]},
            {
                "input": [
                    {**TOOL_OUTPUT, "output": [INPUT_HI, input_image(None)]},
                    {**COMPUTER_OUTPUT, "output": SCREENSHOT},
                ]
            },
            2 * IMAGE_TOKENS,
        ),
    ],
)
def test_an_estimate_counts_images_and_the_text_count_does_not(
    endpoint: str, bare: dict[str, Any], pictured: dict[str, Any], allowance: int
) -> None:
    """The estimate's prompt (count_prompt_with) adds each image's allowance and never an
    image's data as text; the text count (count_prompt: a guardrail's max_input_tokens)
    is unchanged by images."""
    counter = token_count.counter_for("gpt-4o")
    with_images = token_count.count_prompt_with(counter, endpoint, pictured)
    assert with_images == token_count.count_prompt_with(counter, endpoint, bare) + allowance
    assert count_prompt(endpoint, pictured, "gpt-4o") == count_prompt(endpoint, bare, "gpt-4o")


def test_a_data_url_is_neither_counted_nor_a_reason_to_leave_the_event_loop() -> None:
    """A chat image's megabyte of base64 is not text: counted inline, at its allowance."""
    counter = TextCounter(encoding("o200k_base"))
    bare, pictured = [user(CHAT_HI)], [user(CHAT_HI, chat_image(None, DATA_URL))]
    assert count_messages_within(counter, pictured, 16) == (
        count_messages_within(counter, bare, 16) + IMAGE_TOKENS
    )
    assert count_messages_within(counter, pictured, 16, images=False) == (
        count_messages_within(counter, bare, 16)
    )
    assert DATA_URL not in counter.remembered


PRICES = UnitPrices(2_500, 10_000, 2_500, 2_500, 10_000, PriceSource.POLICY)
ROUTE = ModelRoute("m", (Deployment("a", "gpt-4o", 1, 1, None, PRICES),), RoutingConfig(), None)
DETAILS = st.sampled_from([None, "low", "high", "auto"])
SEEN_TEXTS = st.sampled_from(["Hello world", "describe this", "", "<|endoftext|>"])
PART_TEXTS = SEEN_TEXTS | st.text(max_size=20)
# A message: its text parts, and the images to put among them (detail, where: 0 to 1).
MESSAGES = st.tuples(
    st.lists(PART_TEXTS, max_size=3), st.lists(st.tuples(DETAILS, st.floats(0, 1)), max_size=3)
)


def with_images(
    texts: list[str], images: list[tuple[str | None, float]], endpoint: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A message's content without and with its images, each at its place among the texts."""
    kind = "text" if endpoint == "chat" else "input_text"
    bare: list[dict[str, Any]] = [{"type": kind, "text": t} for t in texts]
    pictured = list(bare)
    image = chat_image if endpoint == "chat" else input_image
    for detail, where in images:
        pictured.insert(round(where * len(pictured)), image(detail, DATA_URL))
    return bare, pictured


@settings(max_examples=200, deadline=None)
@given(
    endpoint=st.sampled_from(["chat", "responses"]),
    messages=st.lists(MESSAGES, min_size=1, max_size=4),
    cap=st.integers(1, 10_000),
)
def test_k_images_add_their_allowances_to_the_estimate(
    endpoint: Endpoint,
    messages: list[tuple[list[str], list[tuple[str | None, float]]]],
    cap: int,
) -> None:
    """The estimate with images is the estimate without them plus each one's allowance
    (85 at detail low, else 1,445), inline or not; the data URLs add nothing."""
    bare_messages, pictured_messages, allowance = [], [], 0
    for texts, images in messages:
        bare, pictured = with_images(texts, images, endpoint)
        bare_messages.append({"role": "user", "content": bare})
        pictured_messages.append({"role": "user", "content": pictured})
        allowance += sum(85 if detail == "low" else 1445 for detail, _ in images)
    field = "messages" if endpoint == "chat" else "input"
    cap_field = "max_tokens" if endpoint == "chat" else "max_output_tokens"
    without = estimate_now(endpoint, {field: bare_messages, cap_field: cap}, ROUTE, None)
    found = estimate_now(endpoint, {field: pictured_messages, cap_field: cap}, ROUTE, None)
    assert found.tokens == without.tokens + allowance
    assert found.nanousd == dearest_cost(ROUTE, Usage(without.tokens - cap + allowance, cap))
    if endpoint == "chat":  # the data URLs are not text to tokenize: still counted inline
        body = {field: pictured_messages, cap_field: cap}
        assert estimate_inline(endpoint, body, ROUTE, None) == found


# --- long texts, counted in pieces (encoded_length) ---

WORD_FIRST = st.characters(categories=("Lu", "Ll", "Lt", "Lm", "Lo"))
WORD_REST = st.characters(
    categories=("Lu", "Ll", "Lo", "Mn", "Nd", "No", "Po", "Ps", "Pe", "Sm", "So"),
    exclude_characters=" ",
)
WORDS = st.lists(
    st.builds(lambda a, b: a + b, WORD_FIRST, st.text(WORD_REST, max_size=10)), min_size=1
)


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
@settings(max_examples=150, deadline=None)
@given(words=WORDS, piece=st.integers(min_value=16, max_value=64))
def test_a_long_text_counted_in_pieces_counts_as_the_whole(
    name: str, words: list[str], piece: int
) -> None:
    """Cut before a space that starts a word, where the pre-tokenizer splits anyway: the
    pieces' counts add up to the whole text's, exactly."""
    encoder = encoding(name)
    text = " ".join(words)
    assert encoded_length(encoder, text, piece) == len(encoder.encode(text, disallowed_special=()))


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=400), piece=st.integers(min_value=16, max_value=64))
def test_any_long_text_counted_in_pieces_is_near_the_whole(
    name: str, text: str, piece: int
) -> None:
    """A piece with no word start is cut where it ends: a token or two either way a cut."""
    encoder = encoding(name)
    whole = len(encoder.encode(text, disallowed_special=()))
    cuts = len(text) // piece + 1
    assert abs(encoded_length(encoder, text, piece) - whole) <= 2 * cuts


def test_a_long_prompt_is_counted_in_pieces_as_one() -> None:
    """count_text and a counter's count of a text over PIECE_CHARS: the whole's count."""
    text = " ".join(f"word{i % 97} and, more: {i}" for i in range(20_000))
    assert len(text) > 4 * PIECE_CHARS
    whole = len(encoding("o200k_base").encode(text, disallowed_special=()))
    assert count_text(text, "gpt-4o") == whole
    assert counter_for("gpt-4o").count(text) == whole


class _RecordingEncoder:
    """An encoder that records the length of each text it is given (one token a char)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def encode(self, text: str, disallowed_special: Any = "all") -> list[int]:
        self.sizes.append(len(text))
        return [0] * len(text)


def test_a_long_text_never_reaches_the_encoder_whole() -> None:
    """The list of a whole 15 MB prompt's tokens held the GIL ~0.1 s while it was built
    (the event loop and every other request waited): no encode call sees more than
    PIECE_CHARS, word starts or not, and nothing is lost between the pieces."""
    recording = _RecordingEncoder()
    counter = TextCounter(recording)  # type: ignore[arg-type]
    for text in ("lorem ipsum " * 400_000, "x" * 1_000_003, "1 2 3 " * 100_000):
        recording.sizes.clear()
        assert counter.count(text) == len(text)
        assert max(recording.sizes) <= PIECE_CHARS
