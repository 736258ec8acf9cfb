"""Where the strings and bare values of a JSON text are, so a redaction keeps it JSON.

A rule may match outside a JSON string: a card number written as a number
(`{"card": 4111111111111111}`), or a span that crosses tokens. Its marker written in
place would leave text no JSON reader takes (`{"card": [REDACTED:credit_card]}`), so a
redaction is cut along the text's tokens (`Layout.edits`): the part inside a string's
content gets the marker as string content, a bare value (a number, `true`, `false`,
`null`) it touches is replaced whole by the marker as a JSON string, and quotes,
punctuation and whitespace stay. The result parses, with the same structure.

A stream's text is laid out a piece at a time, from whether its start is inside a
string (`Layout(source, in_string)`); a stream releases nothing that ends inside a bare
value (`bare_around`), so a value it may have to replace is never half sent. Pure.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator

import orjson

# A string (its content, and its closing quote unless the text ends first), or a bare
# value: a run of anything but punctuation, whitespace and quotes.
_TOKEN = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"?|[^\s{}\[\],:"]+', re.DOTALL)
_CONTENT = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)  # a string's content
_BARE_RUN = re.compile(r'[^\s{}\[\],:"\\]*')  # no token ends in it, and no escape


def extends_bare(piece: str) -> bool:
    """Whether `piece`, after a bare value, only makes it longer (no escape in it either)."""
    return _BARE_RUN.fullmatch(piece) is not None


class Layout:
    """The string contents (without their quotes) and bare values of `source`, in order;
    `in_string`: whether `source` begins inside a string's content."""

    __slots__ = ("_bare", "_ends", "_starts", "length")

    def __init__(self, source: str, in_string: bool = False) -> None:
        self.length = len(source)
        starts: list[int] = []
        ends: list[int] = []
        bare: list[bool] = []
        position = 0
        if in_string:
            content = _CONTENT.match(source)
            position = content.end() if content is not None else 0
            starts.append(0)
            ends.append(position)
            bare.append(False)
            position += 1  # its closing quote (past the end when the text ends first)
        for token in _TOKEN.finditer(source, position):
            if token.start(1) < 0:
                starts.append(token.start())
                ends.append(token.end())
                bare.append(True)
            else:
                starts.append(token.start(1))
                ends.append(token.end(1))
                bare.append(False)
        self._starts, self._ends, self._bare = starts, ends, bare

    def edits(self, start: int, end: int, marker: str) -> Iterator[tuple[int, int, str]]:
        """(start, end, replacement) that redact `source[start:end]` with `marker` (JSON
        string content) and keep the text JSON, in order."""
        at = bisect_right(self._ends, start)
        while at < len(self._starts) and self._starts[at] < end:
            low, high = self._starts[at], self._ends[at]
            if self._bare[at]:
                yield low, high, f'"{marker}"'
            elif max(start, low) < min(end, high):
                yield max(start, low), min(end, high), marker
            at += 1

    def in_string_at(self, position: int) -> bool:
        """Whether `position` is inside a string's content (its closing quote still to come)."""
        at = bisect_left(self._ends, position)
        return at < len(self._starts) and not self._bare[at] and self._starts[at] <= position

    def bare_around(self, position: int) -> int | None:
        """Where the bare value that `position` cuts begins (one that ends the text may go
        on in the next piece, so the text's end cuts it too); None when none."""
        at = bisect_left(self._ends, position)
        if at == len(self._starts) or not self._bare[at]:
            return None
        start, end = self._starts[at], self._ends[at]
        if start < position < end or start < position == end == self.length:
            return start
        return None


def layout_of_json(source: str) -> Layout | None:
    """The layout of `source` when it is a JSON text, else None (redacted as it is)."""
    try:
        orjson.loads(source)
    except orjson.JSONDecodeError:
        return None
    return Layout(source)
