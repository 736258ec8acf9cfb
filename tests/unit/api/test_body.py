"""What makes a parsed body unforwardable (depth, integers beyond 64 bits), and check_body."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.api.body import (
    MAX_DEPTH,
    MAX_INTEGER,
    MIN_INTEGER,
    check_body,
    check_forwardable,
    check_integers,
    measure,
    out_of_range_integer,
    too_deep_field,
)
from gateway.errors import InvalidRequest

HI = [{"role": "user", "content": "hi"}]


def body_nested(depth: int, field: str = "tools") -> tuple[bytes, dict[str, Any]]:
    """A body `depth` levels deep (the body object is level 1), its deepest part under `field`."""
    raw = b'{"model": "m", "' + field.encode() + b'": ' + b"[" * (depth - 1) + b"]" * (depth - 1)
    raw += b"}"
    return raw, orjson.loads(raw)


@given(st.integers(min_value=2, max_value=MAX_DEPTH))
def test_any_depth_up_to_the_limit_is_forwardable(depth):
    raw, body = body_nested(depth)
    assert measure(body) == (depth, False)
    check_forwardable(raw, body)
    orjson.dumps(body)  # and orjson can really write it back


@given(st.integers(min_value=MAX_DEPTH + 1, max_value=1024))
def test_any_depth_beyond_the_limit_names_its_top_level_field(depth):
    raw, body = body_nested(depth)
    assert measure(body)[0] == MAX_DEPTH + 1  # the walk stops there
    assert too_deep_field(body) == "tools"
    with pytest.raises(InvalidRequest) as refused:
        check_forwardable(raw, body)
    assert (refused.value.status, refused.value.param, refused.value.code) == (
        400,
        "tools",
        "nesting_too_deep",
    )


def test_the_limit_is_below_what_orjson_can_write():
    """The bound protects the forwarder: orjson refuses to write 255 levels."""
    assert MAX_DEPTH < 255
    _, body = body_nested(255)
    with pytest.raises(TypeError):
        orjson.dumps(body)


def test_many_brackets_without_depth_pass():
    """A wide body (many small objects) is walked and passes."""
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}] * 500}
    raw = orjson.dumps(body)
    assert raw.count(b"{") > MAX_DEPTH
    assert measure(body) == (5, False)
    check_forwardable(raw, body)


def test_brackets_inside_strings_do_not_count_as_depth():
    body = {"model": "m", "content": "[" * 1000}
    check_forwardable(orjson.dumps(body), body)


def test_a_huge_top_level_key_is_cut_in_param_and_message():
    key = "k" * 10_000
    raw = b'{"' + key.encode() + b'": ' + b"[" * 200 + b"]" * 200 + b"}"
    with pytest.raises(InvalidRequest) as refused:
        check_forwardable(raw, orjson.loads(raw))
    assert refused.value.param is not None and len(refused.value.param) < 400
    assert len(refused.value.message) < 600


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        ({}, 1),
        ({"a": 1}, 1),
        ({"a": []}, 2),
        ({"a": {"b": [1, "x"]}}, 3),
        ({"a": {"b": [1, "x", [0]]}, "c": []}, 4),
        ({"a": [1, 2, {"b": 1}]}, 3),
    ],
)
def test_measure_finds_the_depth(body, depth):
    assert measure(body) == (depth, False)


@pytest.mark.parametrize(
    ("value", "suspicious"),
    [
        (1e19, True),
        (-9.3e18, True),
        (float(2**63), True),
        (9.2e18, False),
        (1.5, False),
        (2**64 - 1, False),
    ],
)
def test_measure_flags_floats_that_may_be_integers_orjson_could_not_hold(value, suspicious):
    assert measure({"a": [{"b": value}]})[1] is suspicious


def test_measure_stops_at_the_first_level_beyond_the_limit_whatever_the_depth():
    node: list[Any] = []
    for _ in range(50_000):
        node = [node]
    assert measure({"a": node}) == (MAX_DEPTH + 1, False)


def test_a_wide_body_with_a_big_integer_is_refused():
    """The walked path (many brackets) finds big integers too."""
    body = {"model": "m", "messages": [{"role": "user"}] * 200, "seed": 10**20}
    raw = json.dumps(body).encode()
    with pytest.raises(InvalidRequest) as refused:
        check_forwardable(raw, orjson.loads(raw))
    assert (refused.value.param, refused.value.code) == ("seed", None)


def test_a_float_literal_as_large_as_a_big_integer_passes():
    raw = (
        b'{"model": "m", "messages": ['
        + b'{"role": "user"},' * 200
        + b'{"role": "user"}], "t": 1e19}'
    )
    check_forwardable(raw, orjson.loads(raw))


# --- integers beyond 64 bits ---------------------------------------------------------


@given(st.integers(min_value=MIN_INTEGER, max_value=MAX_INTEGER))
def test_any_64_bit_integer_is_forwarded_exactly(value):
    raw = json.dumps({"model": "m", "seed": value, "user": str(value) * 2}).encode()
    assert out_of_range_integer(raw) is None
    assert orjson.loads(raw)["seed"] == value  # and orjson reads it exactly


@given(st.integers(min_value=MAX_INTEGER + 1) | st.integers(max_value=MIN_INTEGER - 1))
def test_any_integer_beyond_64_bits_is_found_with_its_path(value):
    raw = json.dumps({"model": "m", "meta": {"x": [0, value]}}).encode()
    assert out_of_range_integer(raw) == ("meta.x[1]", str(value))


@pytest.mark.parametrize(
    ("literal", "words"),
    [
        (str(MAX_INTEGER + 1), "above maximum value. Expected a value <= 18446744073709551615"),
        (str(MIN_INTEGER - 1), "below minimum value. Expected a value >= -9223372036854775808"),
        (
            "9" * 5000,
            "but got 9999999999999999999999999999999999999999999999999999999999999999… (cut, 5000 characters) instead.",
        ),
    ],
)
def test_an_out_of_range_integer_is_refused_naming_its_field(literal, words):
    raw = b'{"model": "m", "seed": ' + literal.encode() + b"}"
    with pytest.raises(InvalidRequest) as refused:
        check_integers(raw)  # what read_json_object runs, also when orjson cannot parse it
    assert (refused.value.status, refused.value.param, refused.value.code) == (400, "seed", None)
    assert words in refused.value.message
    assert len(refused.value.message) < 300


def test_the_first_big_integer_in_document_order_is_named():
    raw = b'{"a": [1, 99999999999999999999], "b": 99999999999999999999}'
    assert out_of_range_integer(raw) == ("a[1]", "99999999999999999999")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"user": "12345678901234567890123"}',  # digits in a string
        b'{"t": 1.2345678901234567890123}',  # a decimal, not an integer
        b'{"t": 12345678901234567890123.5}',
        b'{"t": 1e30}',
        b"not json 12345678901234567890123",
    ],
)
def test_long_digit_runs_that_are_not_big_integers_pass(raw):
    assert out_of_range_integer(raw) is None


# --- check_body --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"model": "m", "messages": HI}, ("m", False)),
        ({"model": "m", "messages": HI, "stream": True}, ("m", True)),
        ({"model": "m", "messages": HI, "stream": None}, ("m", False)),
    ],
)
def test_check_body_returns_the_model_and_whether_it_streams(body, expected):
    assert check_body("chat", body) == expected


def test_check_body_raises_the_first_refusal():
    with pytest.raises(InvalidRequest) as refused:
        check_body("chat", {"model": "m", "messages": HI, "max_tokens": "9"})
    assert (refused.value.param, refused.value.code) == ("max_tokens", "invalid_type")
