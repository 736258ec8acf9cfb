"""Texts outside messages (tool names, schema names and strings, grammars, unknown fields)
are scanned and rewritten consistently; invisible characters fold so a key shows."""

import re

import pytest

from gateway.guardrails.check import check_request
from gateway.guardrails.decision import Blocked
from gateway.guardrails.json_texts import NameNotRedactable, rewrite_json
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.normalize import fold
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.texts import rewrite_request

KEY = "AKIAIOSFODNN7EXAMPLE"
BLOCK_SECRETS = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK))])


def replacing(word: str):
    """A text function that redacts each `word` as `[R]`, and counts its calls."""

    def fn(text: str):
        fn.calls += 1  # type: ignore[attr-defined]
        return [(m.start(), m.end(), "[R]") for m in re.finditer(re.escape(word), text)]

    fn.calls = 0  # type: ignore[attr-defined]
    return fn


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"X": {"type": "string"}}},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/X"}}},
        {"type": "object", "properties": {}, "required": ["X"]},
        {"type": "X"},
        {"type": "string", "format": "X"},
        {"vendor": {"X": 1}},
    ],
)
def test_a_name_a_rule_would_rewrite_is_refused_not_renamed(schema):
    """A property's name, a `$ref`, a `required` entry, a type or format, a key: rewriting
    any breaks the schema or the client's parser, so it raises."""
    with pytest.raises(NameNotRedactable):
        rewrite_json(schema, replacing("X"))


def test_values_in_a_schema_are_still_redacted():
    """Descriptions, titles, defaults, examples, enum and const values and patterns are
    values: rewritten as texts are (the request stays valid)."""
    schema = {"title": "X", "description": "a X", "default": "X", "examples": ["X"]}
    schema |= {"enum": ["a", "X"], "const": "X", "pattern": "^X$"}
    assert rewrite_json(schema, replacing("X")) == {
        "title": "[R]",
        "description": "a [R]",
        "default": "[R]",
        "examples": ["[R]"],
        "enum": ["a", "[R]"],
        "const": "[R]",
        "pattern": "^[R]$",
    }


def test_a_clean_schema_is_returned_as_it_came_with_each_text_scanned_once():
    """Nothing to rewrite: the same object; a name repeated in `required` costs no scan."""
    properties = {f"field_{i}": {"type": "string"} for i in range(20)}
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    fn = replacing("X")
    assert rewrite_json(schema, fn) is schema
    assert fn.calls == 20


@pytest.mark.parametrize(
    "names",
    [
        ["a", "PROJECT_ZEUS", "b"],
        ["PROJECT_ZEUS", "b"],
        ["a", "PROJECT_ZEUS"],
    ],
)
@pytest.mark.parametrize("regex", ["^PROJECT_[A-Z]+$", r"\APROJECT_[A-Z]+\z"])
def test_each_name_is_checked_as_its_own_text(names, regex):
    """An anchored pattern sees each property name alone, as it sees a lone name: a
    name among others is blocked as it is on its own."""
    scanner = Scanner([RuleSource(Rule("p", DetectorKind.PATTERN, GuardAction.BLOCK), regex)])
    schema = {"type": "object", "properties": {n: {"type": "string"} for n in names}}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    for body in (
        {"messages": [], "tools": [tool]},
        {"messages": [], "extra": {n: 1 for n in names}},
    ):
        assert isinstance(check_request(scanner, "chat", body), Blocked)


def test_json_schema_keywords_and_type_names_are_not_texts():
    """`type: string` and keyword names never go through a rule (a keyword rule on
    `string` must not break every schema)."""
    schema = {"type": ["string", "null"], "properties": {}, "description": "d"}
    assert rewrite_json(schema, replacing("string")) is schema


CALL = {
    "role": "assistant",
    "tool_calls": [{"id": "c", "function": {"name": "X", "arguments": "{}"}}],
}
NAMES = [
    ("chat", {"messages": [], "tools": [{"type": "function", "function": {"name": "X"}}]}),
    ("chat", {"messages": [], "functions": [{"name": "X"}]}),
    ("chat", {"messages": [], "tool_choice": {"type": "function", "function": {"name": "X"}}}),
    ("chat", {"messages": [], "function_call": {"name": "X"}}),
    ("chat", {"messages": [CALL]}),
    ("chat", {"messages": [{"role": "assistant", "function_call": {"name": "X"}}]}),
    (
        "chat",
        {
            "messages": [],
            "response_format": {"type": "json_schema", "json_schema": {"name": "X"}},
        },
    ),
    (
        "responses",
        {"input": [{"type": "function_call", "call_id": "c", "name": "X", "arguments": "{}"}]},
    ),
    ("responses", {"input": "hi", "tool_choice": {"type": "function", "name": "X"}}),
    ("responses", {"input": "hi", "tools": [{"type": "function", "name": "X"}]}),
]
FREE_TEXTS = [
    (
        "chat",
        {"messages": [{"role": "user", "content": [{"type": "file", "file": {"filename": "X"}}]}]},
    ),
    (
        "chat",
        {"messages": [], "web_search_options": {"user_location": {"approximate": {"region": "X"}}}},
    ),
    ("chat", {"messages": [], "vendor_field": {"nested": ["X"]}}),
    ("completions", {"prompt": "hi", "vendor_field": "X"}),
    ("embeddings", {"input": "hi", "input_type": "X"}),
    # Keys the gateway does not know inside messages, parts, tools, stream_options.
    ("chat", {"messages": [{"role": "assistant", "content": "ok", "thinking": "X"}]}),
    ("chat", {"messages": [{"role": "assistant", "thinking_blocks": [{"thinking": "X"}]}]}),
    (
        "chat",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "note": "X"}]}]},
    ),
    ("chat", {"messages": [], "tools": [{"type": "function", "function": {}, "about": "X"}]}),
    ("chat", {"messages": [], "stream_options": {"include_usage": True, "x": "X"}}),
    ("completions", {"prompt": "hi", "stream_options": {"x": ["X"]}}),
    ("responses", {"input": [{"role": "user", "content": "hi", "thinking": "X"}]}),
    (
        "responses",
        {
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "a", "x": "X"}],
                }
            ]
        },
    ),
]


@pytest.mark.parametrize(("endpoint", "body"), NAMES)
def test_names_of_tools_formats_and_calls_are_scanned_and_never_renamed(endpoint, body):
    """A tool's, a format's or a called tool's name a rule would rewrite raises: the check
    refuses the request rather than rename what the upstream matches by name."""
    with pytest.raises(NameNotRedactable):
        rewrite_request(endpoint, body, replacing("X"))


@pytest.mark.parametrize(("endpoint", "body"), FREE_TEXTS)
def test_locations_files_and_unknown_fields_are_scanned(endpoint, body):
    """Each of these reaches the model (or an upstream's own reader): rewritten."""
    out = rewrite_request(endpoint, body, replacing("X"))
    assert "[R]" in repr(out) and "X" not in repr(out).replace("[R]", "")


def test_identifiers_and_settings_stay_unscanned():
    """`user`, `metadata` and settings are not texts; a file's data is not scanned."""
    body = {
        "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_data": "X"}}]}],
        "user": "X",
        "metadata": {"X": "X"},
        "service_tier": "X",
        "reasoning_effort": "X",
        "tool_choice": "X",
    }
    assert rewrite_request("chat", body, replacing("X")) is body


TAGGED = "".join(chr(0xE0000 + ord(c)) for c in KEY)


@pytest.mark.parametrize(
    "text",
    [
        TAGGED,
        f"key {TAGGED}.",
        f"{KEY[:8]}\u3164{KEY[8:]}",
        f"{KEY[:4]}\u115f{KEY[4:12]}\u1160{KEY[12:]}",
        f"{KEY[:6]}\uffa0{KEY[6:]}",
        f"{KEY[:6]}\u2800{KEY[6:]}",
    ],
)
def test_a_key_in_tag_characters_or_split_by_fillers_is_found(text):
    """Tag characters read as the ASCII they copy, fillers as nothing: the key blocks."""
    body = {"messages": [{"role": "user", "content": text}]}
    assert isinstance(check_request(BLOCK_SECRETS, "chat", body), Blocked)


def test_folding_maps_tag_characters_back_to_their_place():
    """A tag character folds to one ASCII character of the same original position; the
    language tag and cancel tag (U+E0001, U+E007F) are dropped."""
    folded = fold("x \U000e0001\U000e0041\U000e007f\u3164y")
    assert folded.text == "x Ay"
    assert folded.original_span(2, 3) == (3, 4)


def test_a_text_as_deep_as_a_body_may_nest_is_scanned():
    """A body may nest 128 levels (api/body.py): a key at the bottom of a tool schema that
    deep is read like one near the top."""
    schema: dict[str, object] = {"type": "string", "description": KEY}
    for _ in range(55):  # two levels each: with the body's own, about 115
        schema = {"type": "object", "properties": {"p": schema}}
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
    }
    assert isinstance(check_request(BLOCK_SECRETS, "chat", body), Blocked)
