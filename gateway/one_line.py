"""Text a table shows on one line: the characters that would break or forge a line.

`gateway policy history` and `gateway clients list` print people's text (a
reason, a client's name) in table rows; a newline, a terminal escape or a
Unicode line separator in it would start a row of its own. Such text is
escaped when shown (`one_line`), and refused where it is given, when it is a
label no one needs to break (`breaking_character`). Pure functions.
"""

from __future__ import annotations

import unicodedata

_BREAKING = frozenset({"Cc", "Zl", "Zp"})  # controls (C0, DEL, C1), U+2028, U+2029


def one_line(text: str) -> str:
    """`text` with control characters and line separators escaped as Python writes them
    (a newline becomes backslash-n), so a table row stays one line; `--json` keeps the
    real text."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in _BREAKING else c for c in text)


def breaking_character(text: str) -> str | None:
    """The first character of `text` that `one_line` escapes, written as its escape
    (`\\n`, `\\u2028`); None when there is none."""
    for c in text:
        if unicodedata.category(c) in _BREAKING:
            return repr(c)[1:-1]
    return None


def control_character_problem(text: str) -> str | None:
    """Why a one-line label cannot be `text` (no period at the end), else None."""
    found = breaking_character(text)
    if found is None:
        return None
    return f"control characters and line separators are not allowed (it holds {found})"
