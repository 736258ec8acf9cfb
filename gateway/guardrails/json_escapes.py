"""JSON string escapes in a tool call's arguments, decoded for the scan.

Arguments are JSON text: `"bob\\u0040example.com"` is written with a backslash-u, and
the client's JSON reader yields `bob@example.com`. A detector reads the written text,
so the escapes that stand for a plain character are decoded before the scan, and the
text sent on is the decoded one when a rule rewrote it: the same JSON value to any
reader (`\\u0040` and `@` are one character to JSON). Escapes whose character JSON
needs escaped (a quote, a backslash, a control character, a lone surrogate) are kept.

A stream's arguments arrive in pieces, and a piece may end inside an escape:
`split_incomplete` keeps such a tail back for the next piece. Pure.
"""

from __future__ import annotations

import re

_SEQUENCE = re.compile(
    r"\\(?:u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|(.))",
    re.DOTALL,
)
# What may be the start of an escape cut short at the end of a piece: a backslash, or a
# `\u` with fewer than four digits, after a whole high surrogate (its low one to come).
_INCOMPLETE = re.compile(r"(?:\\u[dD][89abAB][0-9a-fA-F]{2})?(?:\\(?:u[0-9a-fA-F]{0,3})?)?\Z")
LONGEST_INCOMPLETE = 11  # `\ud83d\ude0`


def _decoded(match: re.Match[str]) -> str:
    high, low, code, other = match.groups()
    if high is not None:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + (int(low, 16) - 0xDC00))
    if code is not None:
        number = int(code, 16)
        if number < 0x20 or number in (0x22, 0x5C) or 0xD800 <= number <= 0xDFFF:
            return match.group()
        return chr(number)
    return "/" if other == "/" else match.group()  # `\\`, `\"`, `\n`, ...: kept


def decode_escapes(text: str) -> str:
    """`text` with each escape that stands for a plain character written as it."""
    if "\\" not in text:
        return text
    return _SEQUENCE.sub(_decoded, text)


def _escaped(text: str, at: int) -> bool:
    """Whether the character at `at` follows an odd run of backslashes (is escaped)."""
    run = 0
    while at - run > 0 and text[at - run - 1] == "\\":
        run += 1
    return run % 2 == 1


def split_incomplete(text: str) -> tuple[str, str]:
    """(the text up to an escape the end cuts short, that cut escape) ("" when none)."""
    if "\\" not in text[-LONGEST_INCOMPLETE:]:
        return text, ""
    at = max(0, len(text) - LONGEST_INCOMPLETE)
    while True:
        found = _INCOMPLETE.search(text, at)
        if found is None or found.start() == len(text):
            return text, ""
        if not _escaped(text, found.start()):
            return text[: found.start()], text[found.start() :]
        at = found.start() + 1
