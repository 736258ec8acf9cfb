"""CSV bytes for spreadsheets and terminals: RFC 4180 lines, text cells that cannot run
as formulas nor as terminal control sequences.

A report's text cells hold what callers sent (a model alias, a token's subject, a
team claimed by a token that failed): a cell such as `=HYPERLINK(...)` would run in
the spreadsheet finance opens it in. Per OWASP's CSV-injection guidance a text cell
that begins with = + - @ TAB or CR gets a leading single quote. `gateway report usage`
writes to a terminal too, where an ESC sequence in a model alias could move the cursor
and overwrite a real cost row, and a bidi override reorder one: control characters
(C0 with newlines, DEL, C1), format characters (Cf: bidi, zero-width, BOM) and
U+2028/U+2029 are escaped in text cells as `gateway clients list` shows them
(`one_line`: `\\x1b`, `\\n`, `\\u202e`), so every report row is one line showing what
the ledger holds. An escape begins with a backslash, so `\\u200b=1` is no formula either.
Numeric columns (counts, USD amounts) are left alone: a number stays a number. JSON
reports stay raw (JSON escapes control characters itself).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable, Sequence

from gateway.one_line import one_line

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert_text(cell: str) -> str:
    """`cell` as a spreadsheet shows it as text, never evaluates it, and a terminal
    prints it on one line as it is stored."""
    # The quote is decided on the raw text, so a cell starting with TAB or CR keeps
    # its leading ' (as the README says), then shows that TAB as `\t`.
    quote = "'" if cell.startswith(FORMULA_STARTS) else ""
    return quote + one_line(cell)


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
