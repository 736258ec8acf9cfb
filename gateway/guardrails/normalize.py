"""Fold text for scanning: full-width and other-script digits to ASCII, look-alike
letters to Latin, tag characters (U+E0020-U+E007E, invisible copies of ASCII) to the
ASCII they copy, zero-width, combining, filler (blank letters that render as nothing),
control (C0 but tab, line feed and carriage return; DEL; C1) and other default-ignorable
characters dropped; and map each folded character back to the original, so a
redaction covers the ORIGINAL span.

Tag characters are read two ways: a model may read them as the ASCII they copy (a key
spelled in tags), while a person, or a program that copies the text, sees nothing there
(`AKIA<tag A>IOSFODNN7EXAMPLE` is the key on screen). A text that holds one is also
folded with its tags dropped (`fold_visible`), and the scanner reads both
(`Folded.has_second_reading`). ASCII controls are read two ways too: dropped
(`zebra<NUL>corn` is the word), and kept as they are, separators, as a terminal
breaks a line at them (`<key><NUL>x` still ends the key where a pattern's `\\b` wants
it: dropped, `x` would lengthen it); a text that holds one is read both ways in the
same pair of scans. The invisible characters that may stand between two words (a
zero-width space, a soft hyphen: `reads_as_gap`) are read two ways as well: dropped
(`zebra<ZWSP>corn` is the word), and as a space (`previous<ZWSP>instructions` is two
words to a model, and to a pattern written for two): `other_readings` lists the
readings besides the first.

Pure; the common case (ASCII with no control character, or text with no character
folding would change) costs one or two C-level checks and builds no map. The second is
exact: fold_table.py lists every character `fold_char` changes, and a test derives the
list again; the ASCII controls are added to it here (`fold_char` sees no ASCII).
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache

import re2

from gateway.guardrails import fold_table
from gateway.guardrails.patterns import re2_options

# Cyrillic and Greek letters that render like Latin ones (from Unicode's confusables,
# the letters homoglyph attacks use), and punctuation NFKC leaves alone; written as
# escapes so the source shows which is which.
_CYRILLIC_LOWER = "\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0456\u0458\u0455\u0501\u0261\u04cf"
_CYRILLIC_UPPER = "\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0405"
_GREEK = "\u03bf\u03b1\u03bd\u039f\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d"
_GREEK_MORE = "\u03a1\u03a4\u03a7\u03a5"
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_DOTS = "\u3002\uff61"  # ideographic full stops (NFKC keeps the first)
# Latin small capitals (U+1D00 A to U+1D22 Z and others; there is no x), which NFKC
# leaves alone: read as the lowercase letters they show, so a word spelled in them is
# the word a keyword rule lists.
_SMALL_CAPITALS = (
    "\u1d00\u0299\u1d04\u1d05\u1d07\ua730\u0262\u029c\u026a\u1d0a\u1d0b\u029f\u1d0d"
    "\u0274\u1d0f\u1d18\ua7af\u0280\ua731\u1d1b\u1d1c\u1d20\u1d21\u028f\u1d22"
)
_SMALL_CAPITAL_LETTERS = "abcdefghijklmnopqrstuvwyz"
# Negative circled and negative squared capitals (U+1F150-U+1F169, U+1F170-U+1F189):
# symbols to Unicode, with no decomposition, but letters to a reader.
_NEGATIVE_CAPITALS = {
    chr(first + i): chr(ord("A") + i) for first in (0x1F150, 0x1F170) for i in range(26)
}
LOOK_ALIKES = str.maketrans(
    {
        **dict(zip(_CYRILLIC_LOWER, "aeopcyxijsdgl", strict=True)),
        **dict(zip(_CYRILLIC_UPPER, "ABEKMHOPCTXS", strict=True)),
        **dict(zip(_GREEK + _GREEK_MORE, "oavOABEZHIKMNPTXY", strict=True)),
        **dict.fromkeys(_DASHES, "-"),
        **dict.fromkeys(_DOTS, "."),
        **dict(zip(_SMALL_CAPITALS, _SMALL_CAPITAL_LETTERS, strict=True)),
        **_NEGATIVE_CAPITALS,
        # Separators NFKC leaves alone (the line and paragraph separators, the ogham space
        # mark): read as the line break or space they are, so a phrase's words apart by
        # one are apart by whitespace (scanner.py's PHRASE_GAP).
        **dict.fromkeys("\u2028\u2029", "\n"),
        "\u1680": " ",
    }
)
# Letters that render as nothing (Hangul fillers, the braille blank): dropped as the
# zero-width characters are, though Unicode files them as letters and symbols.
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Tag characters: each an invisible copy of the ASCII character 0xE0000 below it.
_TAG_FIRST, _TAG_LAST, _TAG_OFFSET = "\U000e0020", "\U000e007e", 0xE0000
_SURROGATE_FIRST, _SURROGATE_LAST = "\ud800", "\udfff"
_SURROGATES = range(0xD800, 0xE000)
_DROPPED_CATEGORIES = frozenset({"Cf", "Mn", "Me", "Cc"})
# The ASCII characters of category Cc but the three a text's layout uses (tab, line
# feed, carriage return): dropped as the C1 controls are (`zebra\x00corn` reads
# `zebracorn`; a terminal or a log shows nothing, or a caret, there).
_ASCII_CONTROLS = "".join(chr(code) for code in (*range(0x20), 0x7F) if chr(code) not in "\t\n\r")
_ASCII_CONTROL_BYTES = _ASCII_CONTROLS.encode("ascii")
# Below this length `isprintable` (a character-class lookup each, ~2.5 ns) is tried
# first; above it a copy and `bytes.translate` (~1 ns a character) is cheaper.
_PRINTABLE_FIRST = 256
# Code points Unicode reserves as default-ignorable (a renderer shows nothing for them)
# but assigns nothing yet, so no category above drops them: the rest of the tag block
# and the ranges around it, U+2065 and U+FFF0-U+FFF8 (DerivedCoreProperties.txt).
_IGNORABLE_UNASSIGNED = (
    ("\u2065", "\u2065"),
    ("\ufff0", "\ufff8"),
    ("\U000e0000", "\U000e0fff"),
)


@dataclass(frozen=True, slots=True)
class Folded:
    """Text as the detectors see it; `origin[i]` is where folded char i came from."""

    text: str
    origin: list[int] | None = None  # None: identical to the original
    # The original holds a tag or an ASCII control character: `fold_visible` reads it
    # otherwise, and the scanner reads both.
    has_second_reading: bool = False
    # The original holds an invisible gap (`reads_as_gap`): read as a space too.
    has_gaps: bool = False

    @property
    def reads_one_way(self) -> bool:
        return not (self.has_second_reading or self.has_gaps)

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        if self.origin is None:
            return start, end
        return self.origin[start], self.origin[end - 1] + 1

    def folded_position(self, original: int) -> int:
        """The first folded character that comes from at or after `original`."""
        if self.origin is None:
            return original
        return bisect_left(self.origin, original)

    def original_position(self, folded: int, original_length: int) -> int:
        """Where folded position `folded` (a start, or the end) lies in the original."""
        if self.origin is None:
            return folded
        return self.origin[folded] if folded < len(self.origin) else original_length


@lru_cache(maxsize=8192)
def fold_char(ch: str) -> str:
    """One non-ASCII character as the detectors should see it ("" to drop it)."""
    if _SURROGATE_FIRST <= ch <= _SURROGATE_LAST:
        return "\ufffd"  # a lone surrogate (a JSON escape a reader takes): shown as such
    if _TAG_FIRST <= ch <= _TAG_LAST:
        return chr(ord(ch) - _TAG_OFFSET)
    if ch in _FILLERS or any(first <= ch <= last for first, last in _IGNORABLE_UNASSIGNED):
        return ""
    if unicodedata.category(ch) in _DROPPED_CATEGORIES:
        return ""
    digit = unicodedata.digit(ch, None)
    if digit is not None and unicodedata.category(ch) == "Nd":
        return str(digit)
    folded = unicodedata.normalize("NFKC", ch).translate(LOOK_ALIKES)
    return "".join(c for c in folded if unicodedata.category(c) not in _DROPPED_CATEGORIES)


def changed_ranges() -> list[tuple[int, int]]:
    """The code point ranges `fold_char` changes (ASCII never changes): fold_table.py
    holds them for this Unicode version (computing them takes seconds)."""
    ranges: list[tuple[int, int]] = []
    for code in range(0x80, 0x110000):
        if code in _SURROGATES:  # no RE2 class holds them: `fold` finds them by their error
            continue
        if fold_char.__wrapped__(chr(code)) == chr(code):
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    return ranges


def _changing_class(ranges: list[tuple[int, int]]) -> re2._Regexp:
    """One RE2 class of every character fold changes: RE2 reads a class of hundreds of
    ranges as one automaton, so a text costs a few ns a character however many."""
    spans = (f"\\x{{{a:x}}}" + (f"-\\x{{{b:x}}}" if b > a else "") for a, b in ranges)
    return re2.compile("[" + "".join(spans) + "]", re2_options())


def _table() -> list[tuple[int, int]]:
    if unicodedata.unidata_version == fold_table.UNICODE_VERSION:
        return fold_table.ranges()
    return changed_ranges()  # another Unicode: slow once, never wrong


def is_plain_ascii(text: str) -> bool:
    """Whether `text` is ASCII with no control character to drop: `fold` leaves it as it
    is, so a scanner may read it unfolded (its bytes are its characters)."""
    return text.isascii() and not _has_ascii_controls(text)


def _has_ascii_controls(text: str) -> bool:
    """For an ASCII `text`: one C-level pass, ~1 ns a character (`isascii` alone is a flag
    read, blind to the controls). A short text with no line break at all (most of a
    stream's events) is answered by `isprintable` without a copy: ~0.1 µs, not ~0.3."""
    if len(text) < _PRINTABLE_FIRST and text.isprintable():
        return False
    return len(text.encode("ascii").translate(None, _ASCII_CONTROL_BYTES)) != len(text)


def fold(text: str) -> Folded:
    if text.isascii():
        return fold_slowly(text) if _has_ascii_controls(text) else Folded(text)
    try:
        if _CHANGING.search(text) is None:  # exact: no character fold would change
            return Folded(text)
    except UnicodeEncodeError:  # a lone surrogate, which RE2 (UTF-8) cannot read: probe p16
        pass
    return fold_slowly(text)


def fold_slowly(text: str, *, tags_as_ascii: bool = True, gaps_as_space: bool = False) -> Folded:
    """`fold` character by character (what `fold` returns for any text); with
    `tags_as_ascii` False, the other reading (`fold_visible`): tag characters dropped
    instead, ASCII controls kept; with `gaps_as_space`, invisible gaps read as a space."""
    out: list[str] = []
    origin: list[int] = []
    has_controls = has_gaps = False
    for i, ch in enumerate(text):
        if ch < "\x80":
            if ch in _ASCII_CONTROLS:
                has_controls = True
                if tags_as_ascii:
                    continue
            out.append(ch)
            origin.append(i)
            continue
        if not tags_as_ascii and _TAG_FIRST <= ch <= _TAG_LAST:
            continue
        folded = fold_char(ch)
        if not folded and reads_as_gap(ch):
            has_gaps = True
            if gaps_as_space:
                out.append(" ")
                origin.append(i)
            continue
        for c in folded:
            out.append(c)
            origin.append(i)
    return Folded("".join(out), origin, has_controls or _has_tags(text), has_gaps)


@lru_cache(maxsize=1024)
def reads_as_gap(ch: str) -> bool:
    """Whether `ch`, an invisible character `fold_char` drops, may stand between two
    words: a zero-width space, joiner or non-joiner, a word joiner, a soft hyphen, a
    bidi mark, a filler. Dropped, `previous<ZWSP>instructions` reads as one word to a
    pattern written for two (a model reads two), and `<key><ZWSP>x` as no key (`\\b`):
    `other_readings` has a space there. Combining marks (they belong to the letter
    before) and tag characters (read as ASCII, or as nothing) are no gap."""
    if _TAG_FIRST <= ch <= _TAG_LAST:
        return False
    return ch in _FILLERS or unicodedata.category(ch) not in ("Mn", "Me")


def _has_tags(text: str) -> bool:
    # `max` runs in C: most texts hold nothing as high as the tag block, and skip the loop.
    if not text or max(text) < _TAG_FIRST:
        return False
    return any(_TAG_FIRST <= ch <= _TAG_LAST for ch in text)


def fold_visible(text: str) -> Folded:
    """`text` folded as it shows on screen: its tag characters dropped, not read as ASCII,
    and its ASCII controls kept, as separators (for a text `fold` says has a second
    reading)."""
    return fold_slowly(text, tags_as_ascii=False)


def readings_of(text: str) -> list[Folded]:
    """Every way a scanner must read `text`: its `fold` first, then `other_readings`."""
    folded = fold(text)
    return [folded] if folded.reads_one_way else [folded, *other_readings(text, folded)]


def other_readings(text: str, folded: Folded) -> list[Folded]:
    """The ways to read `text` besides `folded` (its `fold`) that a scanner must also try:
    as it shows on screen (`fold_visible`) when it holds a tag or an ASCII control, and
    each of the two with its invisible gaps read as spaces when it holds one. Each
    choice is made for the whole text: two, or four, readings, never one per character."""
    readings = []
    if folded.has_second_reading:
        readings.append(fold_visible(text))
    if folded.has_gaps:
        readings.append(fold_slowly(text, gaps_as_space=True))
        if folded.has_second_reading:
            readings.append(fold_slowly(text, tags_as_ascii=False, gaps_as_space=True))
    return readings


_CHANGING = _changing_class([(ord(c), ord(c)) for c in _ASCII_CONTROLS] + _table())
