"""csv_cells: text that a spreadsheet would evaluate is quoted, text that a terminal would
run or reorder is escaped; numbers never are."""

import csv
import io
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.usage.csv_cells import FORMULA_STARTS, csv_bytes, inert_text

# Control (C0, DEL, C1), format (bidi, zero-width, BOM) and line/paragraph separators.
HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})


def is_hidden(c: str) -> bool:
    return unicodedata.category(c) in HIDDEN


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\\tx"),  # quoted as the README says, and the TAB shown escaped
        ("\rx", "'\\rx"),
        ("a=1", "a=1"),
        ("", ""),
        ("'=1", "'=1"),
        ("team-a", "team-a"),
    ],
)
def test_a_text_cell_starting_a_formula_gets_a_quote(cell, shown):
    assert inert_text(cell) == shown


def test_numeric_columns_and_ints_are_left_as_they_are():
    """A negative amount stays a number; a text column in the same row is quoted."""
    body = csv_bytes(["who", "cost", "n"], [["=x", "-0.5", -3]], {"cost"})
    assert body == b"who,cost,n\r\n'=x,-0.5,-3\r\n"


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("odd\x1b[1A\r\x1b[2K2026-12,search", "odd\\x1b[1A\\r\\x1b[2K2026-12,search"),
        ("a\nb", "a\\nb"),
        ("a\r\nb", "a\\r\\nb"),
        ("del\x7f", "del\\x7f"),
        ("c1\x85\x9b", "c1\\x85\\x9b"),
        ("gpt\u202e4o", "gpt\\u202e4o"),
        ("\u2066x\u2069", "\\u2066x\\u2069"),
        ("zw\u200bsp\u200d", "zw\\u200bsp\\u200d"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("café-ü 模型", "café-ü 模型"),
    ],
)
def test_control_and_format_characters_are_shown_escaped(cell, shown):
    """An ESC sequence, a newline, a bidi override or a zero-width character in a model
    alias is shown as its escape (as `clients list` shows it), never run by a terminal."""
    assert inert_text(cell) == shown


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("\u200b=1+1", "\\u200b=1+1"),
        ("\ufeff=HYPERLINK(1)", "\\ufeff=HYPERLINK(1)"),
        ("\u2028=1", "\\u2028=1"),
        ("\u202e@SUM(A1)", "\\u202e@SUM(A1)"),
        ("\x00=1", "\\x00=1"),
    ],
)
def test_an_invisible_character_before_a_formula_leaves_a_backslash_first(cell, shown):
    """`\u200b=1+1` is escaped to text that starts with a backslash, which no spreadsheet
    evaluates; so it needs no quote, and its `=` is not the cell's first character."""
    assert inert_text(cell) == shown
    assert shown.startswith("\\")


@given(st.text(st.characters(codec="utf-8")))
def test_no_cell_holds_a_control_or_format_character(cell):
    """Whatever a caller sends, the cell holds no control, format or separator character,
    and does not start a formula."""
    shown = inert_text(cell)
    assert not any(is_hidden(c) for c in shown), ascii(shown)
    assert not shown.startswith(FORMULA_STARTS)


@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Zl", "Zp"))))
def test_a_cell_without_them_is_unchanged_but_for_the_formula_quote(cell):
    """Text with no such character is shown as it is, with a leading ' when it starts a formula."""
    quote = "'" if cell.startswith(FORMULA_STARTS) else ""
    assert inert_text(cell) == quote + cell


def test_every_csv_row_is_one_line():
    """A newline in a text cell is escaped, so a row is never split into two (nor quoted
    across lines); a reader gets the escape back."""
    body = csv_bytes(["model", "n"], [["a\nb\r\n=1,x", 2]], set())
    assert body == b'model,n\r\n"a\\nb\\r\\n=1,x",2\r\n'
    assert list(csv.reader(io.StringIO(body.decode()))) == [
        ["model", "n"],
        ["a\\nb\\r\\n=1,x", "2"],
    ]
