"""Escapes decoded for the scan: the same JSON value to any reader, and a stream's pieces
cut anywhere decode as the whole text does."""

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guardrails.json_escapes import decode_escapes, split_incomplete

STRINGS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)


@settings(max_examples=400, deadline=None)
@given(value=st.dictionaries(STRINGS, STRINGS, max_size=4), ascii_only=st.booleans())
def test_decoding_keeps_the_json_value(value, ascii_only):
    encoded = json.dumps(value, ensure_ascii=ascii_only)
    decoded = decode_escapes(encoded)
    assert json.loads(decoded) == value
    assert "\\u0040" not in decoded and "\\u0041" not in decoded


@settings(max_examples=400, deadline=None)
@given(
    value=st.lists(STRINGS, max_size=4),
    cuts=st.sets(st.integers(0, 400), max_size=8),
)
def test_pieces_cut_anywhere_decode_as_the_whole(value, cuts):
    """A piece ending inside an escape keeps that escape for the next piece."""
    encoded = json.dumps(value)
    bounds = [0, *sorted(c for c in cuts if c < len(encoded)), len(encoded)]
    out, carried = "", ""
    for start, end in itertools.pairwise(bounds):
        head, carried = split_incomplete(carried + encoded[start:end])
        out += decode_escapes(head)
    out += decode_escapes(carried)
    assert out == decode_escapes(encoded)
    assert json.loads(out) == value


def test_only_safe_escapes_are_decoded():
    assert decode_escapes(r"a\u0040b\u0022\u005c\u000a\/\\u0040\ud83d\ude00\ud83d") == (
        "a@b\\u0022\\u005c\\u000a/\\\\u0040\U0001f600\\ud83d"
    )
