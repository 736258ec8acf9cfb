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
from decimal import Decimal

import orjson

# A string (its content, and its closing quote unless the text ends first), or a bare
# value: a run of anything but punctuation, whitespace and quotes. The quantifiers are
# possessive (nothing here ever backtracks): one match of megabytes of escapes holds the
# GIL ~5x shorter (6 MB of `\n` escapes: 0.27 s → 0.05 s), and other threads wait on it.
_TOKEN = re.compile(r'"([^"\\]*+(?:\\.[^"\\]*+)*+)"?|[^\s{}\[\],:"]+', re.DOTALL)
_CONTENT = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+', re.DOTALL)  # a string's content
_BARE_RUN = re.compile(r'[^\s{}\[\],:"\\]*')  # no token ends in it, and no escape


# A number in exponent form somewhere (a quick test before laying numbers out), and a
# JSON number whole.
_EXPONENT = re.compile(r"[0-9][eE][-+]?[0-9]")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?[eE][-+]?[0-9]+")


def plain_number(value: str) -> str | None:
    """A JSON number in exponent form as its reader reads it, for the scanner: in plain
    decimal (`4111111111111111E0` is 4111111111111111), padded with spaces to the same
    length so positions keep; None when `value` is no such number or its plain form is
    longer (`1e300`: digits a card or a pattern would be, spelled out, do not fit)."""
    if _NUMBER.fullmatch(value) is None:
        return None
    number = Decimal(value)
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or abs(exponent) > len(value):  # too long spelled out
        return None
    plain = format(number, "f")
    return plain.ljust(len(value)) if len(plain) <= len(value) else None


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

    def numbers_read(self, source: str, final: bool = True) -> str:
        """`source` (this layout's text) with each number in exponent form as its reader
        reads it (`plain_number`; same length), for the scanner to read; a number that
        ends the text, unless `final`, may go on and is left as it is."""
        if _EXPONENT.search(source) is None:
            return source
        parts: list[str] = []
        written = 0
        for start, end, bare in zip(self._starts, self._ends, self._bare, strict=True):
            plain = plain_number(source[start:end]) if bare else None
            if plain is None or (end == self.length and not final):
                continue
            parts += (source[written:start], plain)
            written = end
        return "".join((*parts, source[written:])) if parts else source

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


def has_exponent(source: str) -> bool:
    """Whether `source` may hold a number in exponent form (numbers_read has work to do)."""
    return _EXPONENT.search(source) is not None


def numbers_read(source: str) -> str:
    """`source` with its numbers as its reader reads them (`Layout.numbers_read`) when it
    is a JSON text; else as it is."""
    if not has_exponent(source):
        return source
    layout = layout_of_json(source)
    return source if layout is None else layout.numbers_read(source)


def layout_of_json(source: str) -> Layout | None:
    """The layout of `source` when it is a JSON text, else None (redacted as it is)."""
    try:
        orjson.loads(source)
    except orjson.JSONDecodeError:
        return None
    return Layout(source)
