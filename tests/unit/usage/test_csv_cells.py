"""csv_cells: text that a spreadsheet would evaluate is quoted; numbers never are."""

import pytest

from gateway.usage.csv_cells import csv_bytes, inert_text


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
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
