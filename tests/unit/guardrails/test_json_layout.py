"""A redaction of JSON text cut along its tokens: the part in a string becomes the marker
as string content, a bare value it touches (a number, true, false, null) the marker as a
string, so the text stays JSON; text that is not JSON is redacted as it is."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guardrails.decision import review
from gateway.guardrails.json_escapes import Escaped
from gateway.guardrails.json_layout import Layout, layout_of_json, plain_number
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner

KINDS = (DetectorKind.SECRETS, DetectorKind.EMAIL, DetectorKind.CREDIT_CARD)
REDACT = Scanner([RuleSource(Rule(k.value, k, GuardAction.REDACT)) for k in KINDS])
CARDS = [4111111111111111, 5500005555555559, -4111111111111111]
TEXTS = st.lists(
    st.one_of(
        st.text(st.characters(exclude_categories=["Cs", "Cc", "Cf", "Mn", "Me"]), max_size=10),
        st.sampled_from(["bob@example.com", "AKIAIOSFODNN7EXAMPLE", "4111111111111111"]),
        st.sampled_from('\n"\\/é\u2028'),
    ),
    max_size=5,
).map("".join)
SCALARS = st.one_of(
    TEXTS,
    st.sampled_from(CARDS),
    st.integers(-(10**6), 10**6),
    st.sampled_from([True, False, None, 1.5e300, -0.25]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["a", "card", "e-mail", "n"]), inner, max_size=4),
    ),
    max_leaves=10,
)


def redacted_value(value):
    """`value` as a client reads it redacted: each string as a text scan redacts it, a
    number a rule matches as that rule's marker."""
    if isinstance(value, str):
        return review(REDACT, value).text
    if isinstance(value, list):
        return [redacted_value(item) for item in value]
    if isinstance(value, dict):
        return {key: redacted_value(item) for key, item in value.items()}
    if isinstance(value, bool) or value is None:
        return value
    found = review(REDACT, json.dumps(value)).redactions
    return found[0][2] if found else value


def redact_json(text: str) -> str:
    escaped = Escaped(text)
    found = review(REDACT, escaped.view).redactions
    return escaped.redacted(found, layout=layout_of_json(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"card": 4111111111111111}', '{"card": "[REDACTED:credit_card]"}'),
        ("[4111111111111111,true]", '["[REDACTED:credit_card]",true]'),
        ("4111111111111111", '"[REDACTED:credit_card]"'),
        ('{"card": -4111111111111111}', '{"card": "[REDACTED:credit_card]"}'),
        ('{"card":4111111111111111.0e0}', '{"card":"[REDACTED:credit_card]"}'),
    ],
)
def test_a_number_a_rule_matches_becomes_the_marker_as_a_string(text, expected):
    """The whole number, sign and fraction too."""
    assert redact_json(text) == expected


def test_a_span_across_tokens_redacts_each_token_it_touches():
    """Strings keep their quotes, punctuation stays, a number becomes a string."""
    text = '{"a": 12, "b": "x34"}'
    escaped = Escaped(text)
    out = escaped.redacted([(6, 18, "[R]")], layout=Layout(text))
    assert out == '{"a": "[R]", "[R]": "[R]4"}'
    json.loads(out)


def test_a_span_inside_a_string_is_redacted_as_before():
    text = '{"e": "mail bob\\u0040example.com now"}'
    assert redact_json(text) == '{"e": "mail [REDACTED:email] now"}'


def test_text_that_is_not_json_is_redacted_as_it_is():
    assert redact_json("card: 4111111111111111") == "card: [REDACTED:credit_card]"


@settings(max_examples=500, deadline=None)
@given(value=VALUES, ascii_only=st.booleans())
def test_redacted_json_reads_as_the_value_redacted(value, ascii_only):
    """Any JSON value: redacted, it parses, and holds each string and number redacted;
    clean, it is left as written."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    out = redact_json(text)
    assert json.loads(out) == redacted_value(value)
    if json.loads(out) == value:
        assert out == text


@pytest.mark.parametrize(
    ("text", "position", "inside"),
    [
        ('{"a": "bc"}', 7, True),
        ('{"a": "bc"}', 9, True),  # before the closing quote
        ('{"a": "bc"}', 10, False),
        ('{"a": "b', 8, True),  # the text ends inside the string
        ('{"a": 1', 7, False),
    ],
)
def test_in_string_at(text, position, inside):
    assert Layout(text).in_string_at(position) is inside


def test_a_piece_laid_out_from_inside_a_string():
    """A stream's held text may begin inside a string: `x", "n": 12` has a number."""
    layout = Layout('x", "n": 12', in_string=True)
    assert layout.bare_around(10) == 9  # inside 12
    assert layout.bare_around(11) == 9  # at the end: 12 may go on
    assert layout.bare_around(1) is None
    assert Layout('x", "n": 12}').bare_around(11) is None


@pytest.mark.parametrize(
    ("number", "read"),
    [
        ("4111111111111111E0", "4111111111111111"),
        ("41111111111111110e-1", "4111111111111111.0"),
        ("-4.111111111111111e+15", "-4111111111111111"),
        ("1e2", "100"),
        ("1e300", None),  # spelled out it does not fit
        ("1e-999999999", None),  # nor this (and it is not spelled out to find that)
        ("4111111111111111", None),  # no exponent: read as written
        ("01e2", None),  # not a JSON number
    ],
)
def test_a_number_in_exponent_form_is_read_as_its_value(number, read):
    """In plain decimal, padded with spaces to the number's length."""
    assert plain_number(number) == (read and read.ljust(len(number)))


def test_a_number_that_may_go_on_is_read_once_it_ends():
    text = "[1e2, 1e1"
    assert Layout(text).numbers_read(text, final=False) == "[100, 1e1"
    assert Layout(text).numbers_read(text) == "[100, 10 "
