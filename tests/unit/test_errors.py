"""Echoed caller text is bounded: `cut` for log fields and params, `quoted` for messages."""

from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import MAX_ECHOED_CHARS, cut, quoted


@given(st.text(max_size=MAX_ECHOED_CHARS))
def test_short_text_is_kept_whole(text):
    assert cut(text) == text
    assert quoted(text) == f"'{text}'"


@given(st.integers(min_value=MAX_ECHOED_CHARS + 1, max_value=100_000))
def test_long_text_is_cut_and_says_how_long_it_was(length):
    text = "a" * length
    assert cut(text) == "a" * MAX_ECHOED_CHARS + f"… (cut, {length} characters)"
    assert quoted(text) == "'" + "a" * MAX_ECHOED_CHARS + f"…' (cut, {length} characters)"


def test_a_megabyte_is_echoed_in_under_300_characters():
    assert len(quoted("a" * 1024 * 1024)) < 300
    assert len(cut("a" * 1024 * 1024, 64)) < 100


def test_quoted_takes_any_value():
    assert quoted(5) == "'5'"
