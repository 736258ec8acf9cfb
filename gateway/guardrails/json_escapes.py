"""JSON text (a tool call's arguments) as its reader sees it: every escape decoded.

Arguments are JSON text: `"key:\\nAKIA..."` is written with a backslash-n, and the
client's JSON reader yields a newline before the key. A detector reads the text it is
given, so it is given the view (`view_of`): each escape written as its character (`\\n`
a newline, `\\"` a quote, `\\u0040` an `@`, a surrogate pair one character, a lone
surrogate U+FFFD), with a map from view positions back to the text as written.

A redaction of the view is written into the text as written (`Escaped.redacted`): each
span widened to the whole escapes it touches (a view character is one whole escape),
replaced by its marker written as JSON string content; everything else goes on
byte-for-byte, so the result is the same JSON value with the spans redacted, and a
clean text is never changed. Given the text's layout, a span is cut along its tokens, so a
number it touches becomes the marker as a string (json_layout.py).

A stream's arguments arrive in pieces, and a piece may end inside an escape:
`split_incomplete` keeps such a tail back for the next piece. Pure.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence

from gateway.guardrails.json_layout import Layout
from gateway.guardrails.scanner import Redaction

_SEQUENCE = re.compile(
    r"\\(?:u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"
    r'|u([0-9a-fA-F]{4})|(["\\/bfnrt]))'
)
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
# What may be the start of an escape cut short at the end of a piece: a backslash, or a
# `\u` with fewer than four digits, after a whole high surrogate (its low one to come).
_INCOMPLETE = re.compile(r"(?:\\u[dD][89abAB][0-9a-fA-F]{2})?(?:\\(?:u[0-9a-fA-F]{0,3})?)?\Z")
LONGEST_INCOMPLETE = 11  # `\ud83d\ude0`
# JSON string content: what must be escaped (and U+2028/U+2029, which line-splitting
# readers of a stream take for line ends).
_UNSAFE = re.compile('["\\\\\x00-\x1f\u2028\u2029]')


def _decoded(match: re.Match[str]) -> str:
    high, low, code, simple = match.groups()
    if high is not None:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + (int(low, 16) - 0xDC00))
    if code is not None:
        number = int(code, 16)
        return "\ufffd" if 0xD800 <= number <= 0xDFFF else chr(number)
    return _SIMPLE[simple]


def json_chars(text: str) -> str:
    """`text` as the content of a JSON string (ensure_ascii-style escapes where needed)."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class Escaped:
    """A JSON text (`source`) and its `view`. For each escape, its view position and its
    start and end as written; between escapes the two go in step."""

    __slots__ = ("_ends", "_positions", "_starts", "source", "view")

    def __init__(self, source: str, read_as: str | None = None) -> None:
        """`read_as`: `source` with its numbers as their reader reads them, the same length
        and escapes (json_layout.numbers_read); the view is made from it."""
        self.source = source
        self._positions: list[int] = []
        self._starts: list[int] = []
        self._ends: list[int] = []
        if read_as is not None:
            source = read_as
        if "\\" not in source:
            self.view = source
            return
        parts: list[str] = []
        written = 0  # how far into `source` the view is built
        shift = 0  # view position minus source position, so far
        for match in _SEQUENCE.finditer(source):
            start, end = match.span()
            parts.append(source[written:start])
            parts.append(_decoded(match))
            self._positions.append(start + shift)
            self._starts.append(start)
            self._ends.append(end)
            shift += 1 - (end - start)
            written = end
        parts.append(source[written:])
        self.view = "".join(parts)

    def source_position(self, view_position: int) -> int:
        """Where the view character at `view_position` (or the end) begins as written."""
        at = bisect_right(self._positions, view_position) - 1
        if at < 0:
            return view_position
        if self._positions[at] == view_position:
            return self._starts[at]
        return self._ends[at] + (view_position - self._positions[at] - 1)

    def view_position(self, source_position: int) -> int:
        """The view position of the character written at `source_position` (the escape's
        when it is inside one)."""
        at = bisect_right(self._starts, source_position) - 1
        if at < 0:
            return source_position
        if source_position < self._ends[at]:
            return self._positions[at]
        return self._positions[at] + 1 + (source_position - self._ends[at])

    def redacted(
        self, redactions: Sequence[Redaction], upto: int | None = None, layout: Layout | None = None
    ) -> str:
        """The text as written up to view position `upto` (default: all of it), with each
        redaction (view spans, ordered, disjoint, within it) written in; given the text's
        `layout`, cut along its tokens so it stays JSON (json_layout.py)."""
        end = len(self.source) if upto is None else self.source_position(upto)
        if not redactions:
            return self.source[:end]
        edits: list[tuple[int, int, str]] = []
        for start, stop, marker in redactions:
            begin, finish = self.source_position(start), self.source_position(stop)
            if layout is None:
                edits.append((begin, finish, json_chars(marker)))
            else:
                edits.extend(layout.edits(begin, finish, json_chars(marker)))
        out: list[str] = []
        position = 0
        for begin, finish, replacement in edits:
            if begin < position:  # a bare value an earlier redaction replaced whole
                continue
            out.append(self.source[position:begin])
            out.append(replacement)
            position = finish
        out.append(self.source[position:end])
        return "".join(out)


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
