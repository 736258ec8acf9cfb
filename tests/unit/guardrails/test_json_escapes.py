"""Arguments as their JSON reader sees them: the view decodes every escape, a redaction
is written into the text as written (whole escapes, the rest byte-for-byte), and a
stream's pieces cut anywhere read as the whole text does."""

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guardrails.decision import review
from gateway.guardrails.json_escapes import Escaped, split_incomplete
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner

STRINGS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
KINDS = (DetectorKind.SECRETS, DetectorKind.EMAIL, DetectorKind.CREDIT_CARD)
REDACT = Scanner([RuleSource(Rule(k.value, k, GuardAction.REDACT)) for k in KINDS])
SECRETS = ["AKIAIOSFODNN7EXAMPLE", "bob@example.com", "4111111111111111", "x"]
# Values with secrets right after characters JSON escapes (and some it need not).
VALUES = st.lists(
    st.one_of(STRINGS, st.sampled_from(SECRETS), st.sampled_from('\n\t\r"\\/\x00\x1f\u2028é')),
    max_size=8,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(value=st.dictionaries(STRINGS, STRINGS, max_size=4), ascii_only=st.booleans())
def test_the_view_is_what_the_reader_reads(value, ascii_only):
    """Each string of the JSON text appears in the view as the reader yields it."""
    escaped = Escaped(json.dumps(value, ensure_ascii=ascii_only))
    for key, item in value.items():
        assert f'"{key}": "{item}"' in escaped.view


@settings(max_examples=600, deadline=None)
@given(value=VALUES, ascii_only=st.booleans(), wrapped=st.booleans())
def test_arguments_are_scanned_and_redacted_as_their_value(value, ascii_only, wrapped):
    """Scanning the arguments finds what scanning the value finds; redacted, they parse
    and hold the redacted value."""
    arguments = json.dumps({"k": value} if wrapped else value, ensure_ascii=ascii_only)
    escaped = Escaped(arguments)
    alone, within = review(REDACT, value), review(REDACT, escaped.view)
    assert within.fired == alone.fired
    out = escaped.redacted(within.redactions)
    assert json.loads(out) == ({"k": alone.text} if wrapped else alone.text)
    if not alone.redactions:
        assert out == arguments  # clean: as written


@pytest.mark.parametrize(
    "arguments",
    [
        '{"note":"key:\\nAKIAIOSFODNN7EXAMPLE\\n","c":"card\\n4111111111111111"}',
        '{"e":"x\\u0022bob@example.com"}',
        '{"e":"x\\nbob@example.com\\t"}',
        '{"e":"\\\\bob@example.com\\""}',
        '{"e":"\\u0062ob\\u0040example.com"}',
    ],
)
def test_a_secret_after_an_escape_is_found_and_redacted_validly(arguments):
    escaped = Escaped(arguments)
    result = review(REDACT, escaped.view)
    assert result.redactions
    text = json.dumps(json.loads(escaped.redacted(result.redactions)))
    assert "AKIA" not in text and "example" not in text and "4111" not in text


def test_a_marker_is_written_as_json_string_content():
    escaped = Escaped('"a\\u0040b.co"')
    assert escaped.redacted([(1, 7, 'say "hi"\\\u2028')]) == '"say \\u0022hi\\u0022\\u005c\\u2028"'


def test_a_span_is_widened_to_whole_escapes():
    """View positions map to whole escapes, never inside one."""
    escaped = Escaped('"\\ud83d\\ude00\\n"')
    assert escaped.view == '"\U0001f600\n"'
    assert [escaped.source_position(i) for i in range(4)] == [0, 1, 13, 15]
    assert escaped.redacted([(1, 3, "R")]) == '"R"'


@settings(max_examples=400, deadline=None)
@given(
    value=st.lists(STRINGS, max_size=4),
    cuts=st.sets(st.integers(0, 400), max_size=8),
)
def test_pieces_cut_anywhere_read_as_the_whole(value, cuts):
    """A piece ending inside an escape keeps that escape for the next piece."""
    encoded = json.dumps(value)
    bounds = [0, *sorted(c for c in cuts if c < len(encoded)), len(encoded)]
    out, carried = "", ""
    for start, end in itertools.pairwise(bounds):
        head, carried = split_incomplete(carried + encoded[start:end])
        out += Escaped(head).view
    out += Escaped(carried).view
    assert out == Escaped(encoded).view
