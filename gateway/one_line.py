"""Text a table shows on one line: the characters that would break or forge a line.

`gateway policy history` and `gateway clients list` print people's text (a
reason, a client's name) in table rows; a newline, a terminal escape or a
Unicode line separator in it would start a row of its own, and a bidi or other
format character (U+202E right-to-left override, U+2066 isolate, U+200F) would
reorder what the row shows, so a name could pass for another. Such text is
escaped when shown (`one_line`), and refused where it is given, when it is a
label no one needs to break (`breaking_character`). Pure functions.
"""

from __future__ import annotations

import unicodedata

# controls (C0, DEL, C1), U+2028, U+2029, and format characters (Cf: bidi embeddings,
# overrides and isolates U+202A-U+202E, U+2066-U+2069, marks U+200E, U+200F, U+061C,
# zero-width U+200B-U+200D, U+FEFF): what the text shows must be what it holds.
_BREAKING = frozenset({"Cc", "Zl", "Zp", "Cf"})


def one_line(text: str) -> str:
    """`text` with control, format (bidi) characters and line separators escaped as Python
    writes them (a newline becomes backslash-n, U+202E `\\u202e`), so a table row stays one
    line in the order it is stored; `--json` keeps the real text."""
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
    return (
        "control characters, format (bidi) characters and line separators are not allowed "
        f"(it holds {found})"
    )
