"""CSV bytes for spreadsheets: RFC 4180 lines, text cells that cannot run as formulas.

A report's text cells hold what callers sent (a model alias, a token's subject, a
team claimed by a token that failed): a cell such as `=HYPERLINK(...)` would run in
the spreadsheet finance opens it in. Per OWASP's CSV-injection guidance a text cell
that begins with = + - @ TAB or CR gets a leading single quote. Numeric columns
(counts, USD amounts) are left alone: a number stays a number. JSON reports stay raw.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert_text(cell: str) -> str:
    """`cell` as a spreadsheet shows it as text, never evaluates it."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def csv_bytes(
    header: Sequence[str],
    rows: Iterable[Sequence[str | int]],
    numeric_columns: Collection[str],
) -> bytes:
    """The header and rows as CRLF-terminated CSV; every text cell outside
    `numeric_columns` passes through `inert_text`."""
    is_text = [name not in numeric_columns for name in header]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(
            [
                inert_text(cell) if text and isinstance(cell, str) else cell
                for text, cell in zip(is_text, row, strict=True)
            ]
        )
    return out.getvalue().encode()
