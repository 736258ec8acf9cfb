"""The per-endpoint field rules: every rule on the values that must pass and fail."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.api.field_table import REQUIRED, RULES, beyond_64_bits_refusal, first_refusal
from gateway.api.fields import (
    MAX_EMBEDDING_INPUTS,
    MAX_OUTPUT_TOKENS,
    Integer,
    array_of_objects,
    background,
    boolean,
    bounded_number,
    embedding_input,
    integer,
    json_object,
    kind_of,
    messages,
    model,
    no_stream,
    one_of,
    prompt,
    stop,
    stream_options,
    string,
    string_or_array,
    string_or_object,
    supported,
)
from gateway.errors import InvalidRequest
from gateway.limits.estimate import OUTPUT_CAPS

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def refusal(rule: Any, value: Any, name: str = "f") -> tuple[str | None, str | None] | None:
    found = rule(name, value)
    return None if found is None else (found.param, found.code)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "null"),
        (True, "a boolean"),
        (1, "an integer"),
        (1.5, "a decimal number"),
        ("x", "a string"),
        ([], "an array"),
        ({}, "an object"),
    ],
)
def test_kind_of_names_json_kinds_as_openai_does(value, kind):
    assert kind_of(value) == kind


# --- integer ---------------------------------------------------------------------


@given(st.integers(min_value=1))
def test_any_integer_at_or_above_the_minimum_passes(value):
    assert integer(1)("max_tokens", value) is None


@given(st.integers(max_value=0))
def test_any_integer_below_the_minimum_is_integer_below_min_value(value):
    found = integer(1)("max_tokens", value)
    assert found is not None
    assert (found.param, found.code, found.status) == ("max_tokens", "integer_below_min_value", 400)
    assert found.message == (
        "Invalid 'max_tokens': integer below minimum value. "
        f"Expected a value >= 1, but got {value} instead."
    )


@given(JSON_VALUES.filter(lambda v: v is not None and (type(v) is not int)))
def test_any_non_integer_json_value_is_invalid_type(value):
    """Strings, booleans, arrays, objects, fractions; a whole float alone is an integer."""
    assume(not (isinstance(value, float) and value.is_integer()))
    found = integer(1)("max_tokens", value)
    assert found is not None
    assert (found.param, found.code) == ("max_tokens", "invalid_type")
    assert found.message == (
        f"Invalid type for 'max_tokens': expected an integer, but got {kind_of(value)} instead."
    )


def test_integer_messages_match_openais_wording():
    assert integer(1)("max_tokens", "100").message == (
        "Invalid type for 'max_tokens': expected an integer, but got a string instead."
    )
    assert integer(1)("n", 0).message == (
        "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead."
    )


@pytest.mark.parametrize("value", [10.0, 1.0, 1e6])
def test_a_whole_number_written_as_a_decimal_passes(value):
    assert integer(1)("max_tokens", value) is None


@pytest.mark.parametrize("value", [0.0, -3.0])
def test_a_whole_decimal_below_the_minimum_is_shown_as_an_integer(value):
    found = integer(1)("max_tokens", value)
    assert found is not None and found.code == "integer_below_min_value"
    assert f"but got {int(value)} instead" in found.message


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_an_infinite_value_is_not_an_integer(value):
    assert refusal(integer(1), value) == ("f", "invalid_type")


def test_absent_or_null_integers_pass():
    assert integer(1)("n", None) is None


def test_zero_passes_when_the_minimum_is_zero():
    assert integer(0)("max_tokens", 0) is None
    assert refusal(integer(0), -1) == ("f", "integer_below_min_value")


# --- bounded number, boolean, string ---------------------------------------------


# OpenAI's documented ranges: temperature, top_p, the penalties.
RANGES = [(0, 2), (0, 1), (-2, 2)]
NUMBERS = st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats(allow_nan=False)


@pytest.mark.parametrize(("low", "high"), RANGES)
@given(value=NUMBERS)
def test_a_bounded_number_passes_exactly_within_its_range(low, high, value):
    """In range (ends included): forwarded; below or above: OpenAI's decimal codes."""
    found = refusal(bounded_number(low, high), value, "temperature")
    if low <= value <= high:
        assert found is None
    elif value < low:
        assert found == ("temperature", "decimal_below_min_value")
    else:
        assert found == ("temperature", "decimal_above_max_value")


@pytest.mark.parametrize(("low", "high"), RANGES)
@given(value=JSON_VALUES.filter(lambda v: v is not None and type(v) not in (int, float)))
def test_a_bounded_number_of_another_kind_is_invalid_type(low, high, value):
    assert refusal(bounded_number(low, high), value) == ("f", "invalid_type")


def test_bounded_number_messages_match_openais_wording():
    above = bounded_number(0, 2)("temperature", 5)
    below = bounded_number(-2, 2)("presence_penalty", -2.5)
    assert above is not None and below is not None
    assert above.message == (
        "Invalid 'temperature': decimal above maximum value. "
        "Expected a value <= 2, but got 5 instead."
    )
    assert below.message == (
        "Invalid 'presence_penalty': decimal below minimum value. "
        "Expected a value >= -2, but got -2.5 instead."
    )
    assert bounded_number(0, 2)("temperature", None) is None


@pytest.mark.parametrize(
    ("endpoint", "field", "low", "high"),
    [
        ("chat", "temperature", 0, 2),
        ("chat", "top_p", 0, 1),
        ("chat", "presence_penalty", -2, 2),
        ("chat", "frequency_penalty", -2, 2),
        ("completions", "temperature", 0, 2),
        ("completions", "top_p", 0, 1),
        ("completions", "presence_penalty", -2, 2),
        ("completions", "frequency_penalty", -2, 2),
        ("responses", "temperature", 0, 2),
        ("responses", "top_p", 0, 1),
    ],
)
def test_each_endpoints_sampling_fields_have_openais_ranges(endpoint, field, low, high):
    body = {**GOOD[endpoint], field: low}
    assert first_refusal(endpoint, body) is None
    assert first_refusal(endpoint, {**body, field: high}) is None
    below = first_refusal(endpoint, {**body, field: low - 0.01})
    above = first_refusal(endpoint, {**body, field: high + 0.01})
    assert below is not None and (below.param, below.code) == (field, "decimal_below_min_value")
    assert above is not None and (above.param, above.code) == (field, "decimal_above_max_value")


@given(JSON_VALUES)
def test_boolean_accepts_only_booleans_and_null(value):
    expected = None if value is None or isinstance(value, bool) else ("f", "invalid_type")
    assert refusal(boolean, value) == expected


@given(JSON_VALUES)
def test_string_accepts_only_strings_and_null(value):
    expected = None if value is None or isinstance(value, str) else ("f", "invalid_type")
    assert refusal(string, value) == expected


# --- model, stream ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gpt-4o", None),
        (None, ("model", None)),
        ("", ("model", None)),
        (5, ("model", "invalid_type")),
        (["m"], ("model", "invalid_type")),
    ],
)
def test_model_is_a_required_non_empty_string(value, expected):
    assert refusal(model, value, "model") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ({}, None),
        ({"include_usage": True}, None),
        ({"include_usage": None}, None),
        ([], ("stream_options", "invalid_type")),
        ("x", ("stream_options", "invalid_type")),
        ({"include_usage": "yes"}, ("stream_options.include_usage", "invalid_type")),
    ],
)
def test_stream_options_is_an_object_with_a_boolean_include_usage(value, expected):
    assert refusal(stream_options, value, "stream_options") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (False, None),
        (True, ("stream", None)),
        ("no", ("stream", "invalid_type")),
    ],
)
def test_embeddings_cannot_stream(value, expected):
    assert refusal(no_stream, value, "stream") == expected


# --- arrays ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([{"role": "user", "content": "hi"}], None),
        (None, ("messages", None)),
        ("hi", ("messages", "invalid_type")),
        ([], ("messages", "empty_array")),
        (["hi"], ("messages[0]", None)),
        ([{"role": "user", "content": "x"}, {"content": "no role"}], ("messages[1]", None)),
    ],
)
def test_messages(value, expected):
    assert refusal(messages, value, "messages") == expected


def test_an_empty_array_is_refused_in_openais_words():
    found = messages("messages", [])
    assert found is not None
    assert found.message == (
        "Invalid 'messages': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead."
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("once upon", None),
        (["a", "b"], None),
        ([[1, 2]], None),
        ([1, 2, 3], None),  # one prompt as token ids
        (["", "b"], None),  # an empty prompt in a batch: the model writes from the start
        ([], ("prompt", "empty_array")),
        (5, ("prompt", "invalid_type")),
        ({"text": "x"}, ("prompt", "invalid_type")),
        ([None], ("prompt[0]", "invalid_type")),
        ([True], ("prompt[0]", "invalid_type")),
        ([{"a": 1}], ("prompt[0]", "invalid_type")),
        ([1.5], ("prompt[0]", "invalid_type")),
        (["a", None], ("prompt[1]", "invalid_type")),
        ([[1, None]], ("prompt[0][1]", "invalid_type")),
        ([["a"]], ("prompt[0][0]", "invalid_type")),
        ([[]], ("prompt[0]", "empty_array")),
        (["a", [1]], ("prompt[1]", "invalid_type")),  # one kind per batch
        ([1, "a"], ("prompt[1]", "invalid_type")),
    ],
)
def test_completion_prompt(value, expected):
    assert refusal(prompt, value, "prompt") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hello", None),
        (["a", "b"], None),
        ([1, 2, 3], None),
        ([[1, 2], [3]], None),
        (None, ("input", None)),
        ("", ("input", None)),
        ([], ("input", "empty_array")),
        ([""], ("input[0]", None)),
        (["a", ""], ("input[1]", None)),
        ([[1], []], ("input[1]", "empty_array")),
        ([True], ("input[0]", "invalid_type")),
        ([1.5], ("input[0]", "invalid_type")),
        ([{"a": 1}], ("input[0]", "invalid_type")),
        ([None], ("input[0]", "invalid_type")),
        (5, ("input", "invalid_type")),
        ({"text": "x"}, ("input", "invalid_type")),
        # One kind per array: strings, token ids or token id arrays, never mixed.
        ([1, "a"], ("input[1]", "invalid_type")),
        (["a", 1], ("input[1]", "invalid_type")),
        (["a", "b", [1]], ("input[2]", "invalid_type")),
        ([[1], 2], ("input[1]", "invalid_type")),
    ],
)
def test_embedding_input(value, expected):
    assert refusal(embedding_input, value, "input") == expected


@pytest.mark.parametrize("item", ["a", 1, [1]], ids=["texts", "token-ids", "token-arrays"])
def test_an_embeddings_input_holds_at_most_2048_items(item):
    """OpenAI's bound on any input array: 2048 pass, 2049 are refused in its words."""
    assert MAX_EMBEDDING_INPUTS == 2048
    assert embedding_input("input", [item] * 2048) is None
    found = embedding_input("input", [item] * 2049)
    assert found is not None
    assert (found.param, found.code) == ("input", "array_above_max_length")
    assert found.message == (
        "Invalid 'input': array too long. Expected an array with maximum length 2048, "
        "but got an array with length 2049 instead."
    )


def test_a_long_embeddings_input_is_refused_before_its_items_are_read():
    """200k items (the last one bad) get the length refusal, not a walk to the bad item."""
    found = embedding_input("input", [*["a"] * 199_999, ""])
    assert found is not None and found.code == "array_above_max_length"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            [
                {"role": "system", "content": ""},
                {"role": "tool", "content": [], "tool_call_id": "c"},
            ],
            None,
        ),
        ([{"role": "assistant", "tool_calls": [{"id": "c"}]}], None),
        ([{"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}], None),
        ([{"role": "function", "name": "f", "content": None}], None),
        ([{"role": "user"}], ("messages[0].content", None)),
        (
            [{"role": "user", "content": "x"}, {"role": "system", "content": None}],
            ("messages[1].content", None),
        ),
        ([{"role": "developer"}], ("messages[0].content", None)),
        ([{"role": "tool", "tool_call_id": "c"}], ("messages[0].content", None)),
        ([{"role": "tool", "content": "42"}], ("messages[0].tool_call_id", None)),
        (
            [{"role": "tool", "content": "42", "tool_call_id": 7}],
            ("messages[0].tool_call_id", "invalid_type"),
        ),
        ([{"role": "user", "content": [{"type": "text", "text": "x"}]}], None),
        ([{"role": "bogus"}], ("messages[0].role", "invalid_value")),
        ([{"role": "user", "content": 5}], ("messages[0].content", "invalid_type")),
        ([{"role": "user", "content": {"a": 1}}], ("messages[0].content", "invalid_type")),
        ([{"role": "user", "content": [{}, "x"]}], ("messages[0].content[1]", "invalid_type")),
    ],
)
def test_message_roles_and_contents(value, expected):
    assert refusal(messages, value, "messages") == expected


def test_an_unknown_role_is_refused_in_openais_words():
    found = messages("messages", [{"role": "bot"}])
    assert found is not None
    assert found.message == (
        "Invalid value: 'bot'. Supported values are: 'system', 'assistant', 'user', "
        "'function', 'tool', and 'developer'."
    )


def test_supported_values_are_listed_as_openai_lists_them():
    assert supported(("a",)) == "'a'"
    assert supported(("a", "b")) == "'a' and 'b'"
    assert supported(("a", "b", "c")) == "'a', 'b', and 'c'"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("\n", None),
        (["a", "b", "c", "d"], None),
        (5, ("stop", "invalid_type")),
        ([1, 2], ("stop[0]", "invalid_type")),
        (["a", None], ("stop[1]", "invalid_type")),
        (["a"] * 5, ("stop", "array_above_max_length")),
    ],
)
def test_stop_is_a_string_or_up_to_four_strings(value, expected):
    assert refusal(stop, value, "stop") == expected


@given(JSON_VALUES)
def test_shape_rules_accept_only_their_json_kinds(value):
    """object, string-or-object, string-or-array, array-of-objects: null always passes."""
    cases = [
        (json_object, value is None or isinstance(value, dict)),
        (string_or_object, value is None or isinstance(value, str | dict)),
        (string_or_array, value is None or isinstance(value, str | list)),
        (
            array_of_objects,
            value is None or (isinstance(value, list) and all(isinstance(v, dict) for v in value)),
        ),
    ]
    for rule, passes in cases:
        assert (rule("f", value) is None) is passes, rule


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("float", None),
        ("base64", None),
        ("int8", ("encoding_format", "invalid_value")),
        (5, ("encoding_format", "invalid_type")),
        (["float"], ("encoding_format", "invalid_type")),
    ],
)
def test_an_enum_accepts_its_values_only(value, expected):
    assert refusal(one_of("float", "base64"), value, "encoding_format") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([[1, 2], [3]], None),
        ([[1, "a"], [None]], ("input[0][1]", "invalid_type")),
        ([[1], [None]], ("input[1][0]", "invalid_type")),
        ([[1, True]], ("input[0][1]", "invalid_type")),
        ([[1.0]], ("input[0][0]", "invalid_type")),
    ],
)
def test_embedding_token_lists_hold_integers_only(value, expected):
    assert refusal(embedding_input, value, "input") == expected


def test_seed_may_be_any_integer():
    assert integer(None)("seed", -(2**63)) is None
    assert refusal(integer(None), "x") == ("f", "invalid_type")


@given(st.integers(min_value=2**64) | st.integers(max_value=-(2**63) - 1))
def test_an_integer_past_64_bits_is_refused_as_any_value_past_the_bound(value):
    """By its digits alone (body.py never makes an int of them), with the same refusal
    the rule gives the value itself."""
    rule = integer(1, 100)
    expected = rule("f", value)
    assert expected is not None
    found = rule.beyond_64_bits("f", str(value))
    assert found is not None
    assert (type(found), found.message, found.param) == (
        type(expected),
        expected.message,
        expected.param,
    )


def test_an_integer_past_64_bits_on_an_unbounded_side_has_no_refusal_of_the_rule():
    assert integer(None).beyond_64_bits("seed", str(2**70)) is None
    assert integer(1).beyond_64_bits("dimensions", str(2**70)) is None
    assert integer(1).beyond_64_bits("dimensions", str(-(2**70))) is not None


@pytest.mark.parametrize(
    ("endpoint", "path", "code"),
    [
        ("chat", "max_tokens", "integer_above_max_value"),
        ("chat", "n", "integer_above_max_value"),
        ("completions", "best_of", "integer_above_max_value"),
        ("responses", "max_output_tokens", "integer_above_max_value"),
        ("chat", "best_of", None),  # not a field chat checks
        ("chat", "seed", None),  # no bound
        ("chat", "temperature", None),  # not an integer rule
        ("chat", "metadata.max_tokens", None),  # not a top-level field
        ("embeddings", "dimensions", None),
    ],
)
def test_the_table_refuses_a_huge_integer_by_the_fields_bound(endpoint, path, code):
    found = beyond_64_bits_refusal(endpoint, path, str(2**70))
    assert (found.code if found is not None else None) == code
    if found is not None:
        assert found.param == path


# --- the table ------------------------------------------------------------------------

GOOD: dict[str, dict[str, Any]] = {
    "chat": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    "completions": {"model": "m", "prompt": "hi"},
    "embeddings": {"model": "m", "input": "hi"},
    "responses": {"model": "m", "input": "hi"},
}


@pytest.mark.parametrize("endpoint", sorted(GOOD))
def test_a_minimal_good_body_passes_every_endpoint(endpoint):
    assert first_refusal(endpoint, GOOD[endpoint]) is None


@pytest.mark.parametrize(
    ("endpoint", "field", "minimum"),
    [
        ("chat", "max_tokens", 1),
        ("chat", "max_completion_tokens", 1),
        ("chat", "n", 1),
        ("completions", "max_tokens", 0),
        ("completions", "n", 1),
        ("responses", "max_output_tokens", 1),
    ],
)
def test_each_endpoints_token_counts_have_their_minimum(endpoint, field, minimum):
    assert first_refusal(endpoint, {**GOOD[endpoint], field: minimum}) is None
    below = first_refusal(endpoint, {**GOOD[endpoint], field: minimum - 1})
    assert below is not None and (below.param, below.code) == (field, "integer_below_min_value")
    wrong = first_refusal(endpoint, {**GOOD[endpoint], field: str(minimum)})
    assert wrong is not None and (wrong.param, wrong.code) == (field, "invalid_type")


@pytest.mark.parametrize("endpoint", ["chat", "completions", "responses"])
@pytest.mark.parametrize("field", ["temperature", "top_p", "stream"])
def test_sampling_and_stream_fields_are_typed_on_generating_endpoints(endpoint, field):
    found = first_refusal(endpoint, {**GOOD[endpoint], field: "x"})
    assert found is not None and (found.param, found.code) == (field, "invalid_type")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (False, None),
        (True, ("f", None)),
        ("true", ("f", "invalid_type")),
        ("false", ("f", "invalid_type")),
        (1, ("f", "invalid_type")),
        (0, ("f", "invalid_type")),
        ({}, ("f", "invalid_type")),
    ],
)
def test_background_may_only_be_false(value, expected):
    """Not "true" or 1 either: an upstream that coerces them would run a background response."""
    assert refusal(background, value) == expected


# Boolean fields that change what is billed or what the gateway sees, per endpoint.
BOOLEANS = [
    ("chat", "stream"),
    ("chat", "store"),
    ("chat", "parallel_tool_calls"),
    ("chat", "logprobs"),
    ("completions", "stream"),
    ("completions", "echo"),
    ("responses", "stream"),
    ("responses", "store"),
    ("responses", "parallel_tool_calls"),
    ("responses", "background"),
]


@pytest.mark.parametrize(("endpoint", "field"), BOOLEANS)
@pytest.mark.parametrize("value", ["true", "false", 1, 0, [True], {}])
def test_boolean_fields_refuse_anything_but_a_boolean(endpoint, field, value):
    """ "true" or 1 is OpenAI's 400 invalid_type, never forwarded for an upstream to coerce."""
    found = first_refusal(endpoint, {**GOOD[endpoint], field: value})
    assert found is not None and (found.param, found.code) == (field, "invalid_type")
    assert first_refusal(endpoint, {**GOOD[endpoint], field: False}) is None


def test_completions_logprobs_is_a_count():
    """Completions' logprobs is an integer (a boolean is refused, not read as 1)."""
    for good in (0, 5, None):
        assert first_refusal("completions", {**GOOD["completions"], "logprobs": good}) is None
    for bad, code in (
        (True, "invalid_type"),
        ("2", "invalid_type"),
        (-1, "integer_below_min_value"),
    ):
        found = first_refusal("completions", {**GOOD["completions"], "logprobs": bad})
        assert found is not None and (found.param, found.code) == ("logprobs", code)


def test_fields_an_endpoint_does_not_know_are_left_to_the_upstream():
    """Embeddings have no max_tokens: whatever it holds is not the gateway's to judge."""
    assert first_refusal("embeddings", {**GOOD["embeddings"], "max_tokens": "x"}) is None
    assert first_refusal("chat", {**GOOD["chat"], "service_tier": 5}) is None


# Each generating endpoint's own cap, whose bounds its other caps are checked by.
OWN_CAP = {"chat": "max_tokens", "completions": "max_tokens", "responses": "max_output_tokens"}


@pytest.mark.parametrize("endpoint", sorted(OWN_CAP))
@pytest.mark.parametrize("field", OUTPUT_CAPS)
def test_every_output_cap_is_checked_by_the_endpoints_own_bounds(endpoint, field):
    """max_tokens on /v1/responses is reserved for (an upstream may honour it), so a bad
    one is the 400 a bad max_output_tokens gets, not ignored."""
    own = dict(RULES[endpoint])[OWN_CAP[endpoint]]
    rule = dict(RULES[endpoint]).get(field)
    assert isinstance(own, Integer) and isinstance(rule, Integer)
    assert (rule.minimum, rule.maximum) == (own.minimum, own.maximum)
    for bad, code in (
        ("250", "invalid_type"),
        (True, "invalid_type"),
        (2.5, "invalid_type"),
        (own.minimum - 1, "integer_below_min_value"),
        (MAX_OUTPUT_TOKENS + 1, "integer_above_max_value"),
    ):
        found = first_refusal(endpoint, {**GOOD[endpoint], field: bad})
        assert found is not None and (found.param, found.code) == (field, code), bad
    assert first_refusal(endpoint, {**GOOD[endpoint], field: 250}) is None


@pytest.mark.parametrize("endpoint", sorted(OWN_CAP))
def test_the_estimate_reads_only_caps_the_table_checks(endpoint):
    """Every cap the estimate reserves for is an integer rule of the endpoint."""
    rules = dict(RULES[endpoint])
    assert all(isinstance(rules.get(name), Integer) for name in OUTPUT_CAPS)


def test_the_model_is_checked_first():
    found = first_refusal("chat", {"model": 5, "messages": [], "n": 0})
    assert found is not None and found.param == "model"


def test_exactly_the_required_rules_refuse_a_missing_field():
    for rules in RULES.values():
        for name, rule in rules:
            assert (rule(name, None) is not None) is (rule in REQUIRED), name


def test_every_rule_returns_an_invalid_request_with_a_param():
    for endpoint, rules in RULES.items():
        for name, rule in rules:
            for value in ("x", 1.5, [], {}, True, -1, ""):
                found = rule(name, value)
                if found is not None:
                    assert isinstance(found, InvalidRequest), (endpoint, name, value)
                    assert found.status == 400
                    assert found.param is not None and found.param.startswith(name)


@pytest.mark.parametrize(
    ("endpoint", "changes", "expected"),
    [
        ("chat", {"stream_options": {"include_usage": True}}, ("stream_options", None)),
        ("chat", {"stream": False, "stream_options": {}}, ("stream_options", None)),
        ("chat", {"stream": True, "stream_options": {"include_usage": True}}, None),
        ("chat", {"stream_options": None}, None),
        ("completions", {"stream_options": {}}, ("stream_options", None)),
        ("completions", {"best_of": 2, "n": 3}, ("best_of", "invalid_value")),
        ("completions", {"best_of": 3, "n": 3}, None),
        ("completions", {"best_of": 3}, None),
        ("completions", {"n": 129}, ("n", "integer_above_max_value")),
        ("chat", {"n": 129}, ("n", "integer_above_max_value")),
        ("completions", {"best_of": 21}, ("best_of", "integer_above_max_value")),
    ],
)
def test_rules_over_two_fields(endpoint, changes, expected):
    found = first_refusal(endpoint, {**GOOD[endpoint], **changes})
    assert (None if found is None else (found.param, found.code)) == expected
