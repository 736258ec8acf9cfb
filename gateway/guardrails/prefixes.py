"""Where a match could still be in progress: the prefix language of a pattern.

A stream must hold back the tail of its text that could be the beginning of a
match (a trailing `sk-ab`, `-----BEGIN`, a run of digits), and may release the
rest. `prefix_regex(p)` derives, from a pattern's syntax tree, a regex for every
prefix of every string `p` matches, anchors dropped (so it matches a superset:
holding back a little too much is safe, too little is not). Anchored at the end
of the text, the leftmost match of the union of a side's prefix regexes is the
earliest position a match could have started and not yet ended (RE2: one linear
pass). A construct this module does not know gives "any text" (hold everything
the window allows), never a narrower guess; so does a pattern that Python's parser
might read differently from RE2, which runs it (dialect.py). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from re import _constants as sre  # type: ignore[attr-defined]  # the stdlib's parser; no stub
from re import _parser  # type: ignore[attr-defined]
from typing import Any

import re2

from gateway.guardrails.dialect import read_alike

ANY_TEXT = "(?s:.)*"
# Where a prefix may stop. Written as `\z`, not as an optional (`(?:c...)?`): RE2's
# compiler records every optional's skip as a predecessor of the instruction after the
# union, and its program flattening walks that list once per branch point, quadratic in
# the union's size (2,000 keywords of 30 letters: 14 s a compile, and the binding holds
# the GIL throughout, so a worker thread stalls the event loop too).
# An end-of-text assertion between the skip and the join keeps the list short; the text
# ends there anyway (`tail_regex` anchors the union at the end).
ENDS_HERE = r"\z"
_MAX_REPEAT = 1000  # RE2's largest counted repetition

_CATEGORIES = {
    sre.CATEGORY_DIGIT: r"\d",
    sre.CATEGORY_NOT_DIGIT: r"\D",
    sre.CATEGORY_SPACE: r"\s",
    sre.CATEGORY_NOT_SPACE: r"\S",
    sre.CATEGORY_WORD: r"\w",
    sre.CATEGORY_NOT_WORD: r"\W",
}


class UnknownConstruct(Exception):
    """A construct without a known prefix language: fall back to any text."""


def prefix_regex(pattern: str) -> str:
    """A regex matching (at least) every prefix of every match of `pattern`."""
    if not read_alike(pattern):  # Python's tree would describe another language
        return ANY_TEXT
    try:
        tree = _parser.parse(pattern)
        caseless = is_caseless(tree, tree.state.flags)
        body = _prefix(list(tree))
    except (UnknownConstruct, Exception):  # any parse surprise: the safe answer
        return ANY_TEXT
    return ("(?i)" if caseless else "") + f"(?:{body})"


def tail_regex(patterns: Sequence[str]) -> str:
    """One regex whose leftmost match starts where the earliest in-progress match could."""
    return "(?:" + "|".join(prefix_regex(p) for p in patterns) + r")\z"


class TailSearch:
    """The compiled tail regex: `start(text, pos)` is where its leftmost match from `pos`
    begins, or None. ASCII text (the common case) goes to the bytes program through
    RE2's own `Match` (spans, no per-call generator and offset table: ~0.5 µs instead of
    ~3 µs a call on a short text); anything else through the public str API."""

    __slots__ = ("_ascii", "_native", "_str")

    def __init__(self, patterns: Sequence[str], options: re2.Options) -> None:
        source = tail_regex(patterns)
        try:
            self._str = re2.compile(source, options)
        except re2.error:  # derived past RE2's budget: hold what the window allows
            source = f"(?:{ANY_TEXT}){ENDS_HERE}"
            self._str = re2.compile(source, options)
        self._ascii = re2.compile(source.encode(), options)
        self._native = _native_match(self._ascii)

    def start(self, text: str, pos: int) -> int | None:
        if text.isascii():
            return self.start_ascii(text.encode("ascii"), pos)
        found = self._str.search(text, pos)
        return None if found is None else int(found.start())

    def start_ascii(self, data: bytes, pos: int) -> int | None:
        """`start` on an ASCII text already encoded (byte offsets are character offsets)."""
        if self._native is not None:
            begin = int(self._native(_UNANCHORED, data, pos, len(data))[0][0])
            return None if begin < 0 else begin
        found = self._ascii.search(data, pos)
        return None if found is None else int(found.start())


_UNANCHORED = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)


def _native_match(compiled: re2._Regexp) -> Any:
    """RE2's `Match(anchor, bytes, pos, endpos) -> spans` when this google-re2 has it and it
    answers like the public API on a probe; None otherwise (then the public API is used)."""
    native = getattr(getattr(compiled, "_regexp", None), "Match", None)
    if native is None or _UNANCHORED is None:
        return None
    probe = b"a long text"
    try:
        spans = native(_UNANCHORED, probe, 3, len(probe))
        expected = compiled.search(probe, 3)
        if int(spans[0][0]) != (expected.start() if expected else -1):
            return None
    except Exception:  # a different binding: fall back to the public API
        return None
    return native


# --- the derivation ------------------------------------------------------------


def is_caseless(items: Any, flags: int) -> bool:
    """Whether IGNORECASE is on anywhere (then the whole prefix regex is caseless)."""
    if flags & sre.SRE_FLAG_IGNORECASE:
        return True
    for op, av in items:
        if op is sre.SUBPATTERN and (av[1] & sre.SRE_FLAG_IGNORECASE or is_caseless(av[3], 0)):
            return True
        if op is sre.BRANCH and any(is_caseless(b, 0) for b in av[1]):
            return True
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and is_caseless(av[2], 0):
            return True
    return False


def _prefix(items: list[Any]) -> str:
    """Prefixes of a sequence: P(x rest) = P(x) | x P(rest)."""
    if not items:
        return ENDS_HERE
    rest = _prefix(items[1:])
    head_op = items[0][0]
    whole = whole_regex([items[0]])
    if head_op is sre.AT:  # an assertion consumes nothing: dropped
        return rest
    if head_op in (sre.LITERAL, sre.NOT_LITERAL, sre.IN, sre.ANY):
        return f"(?:{whole}{rest}|{ENDS_HERE})"  # one character: P(c) is "" or c
    return f"(?:{_prefix_one(items[0])}|{whole}{rest})"


def _prefix_one(item: tuple[Any, Any]) -> str:
    op, av = item
    if op is sre.SUBPATTERN:
        return _prefix(list(av[3]))
    if op is sre.BRANCH:
        return "|".join(f"(?:{_prefix(list(b))})" for b in av[1])
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        _low, high, sub = av
        if high == 0:
            return ENDS_HERE
        inner = _prefix(list(sub))
        body = whole_regex(list(sub))
        if high is sre.MAXREPEAT or high > _MAX_REPEAT:
            return f"(?:{body})*(?:{inner})"
        if high == 1:
            return f"(?:{inner})"
        return f"(?:{body}){{0,{high - 1}}}(?:{inner})"
    raise UnknownConstruct(op)


def whole_regex(items: list[Any]) -> str:
    """The sequence itself, anchors dropped (a superset of what it matches)."""
    out: list[str] = []
    for op, av in items:
        if op is sre.AT:
            continue
        if op is sre.LITERAL:
            out.append(_char(av))
        elif op is sre.NOT_LITERAL:
            out.append(f"[^{_class_char(av)}]")
        elif op is sre.ANY:
            out.append("(?s:.)")
        elif op is sre.IN:
            out.append(_class(av))
        elif op is sre.SUBPATTERN:
            out.append(f"(?:{whole_regex(list(av[3]))})")
        elif op is sre.BRANCH:
            out.append("(?:" + "|".join(whole_regex(list(b)) for b in av[1]) + ")")
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, high, sub = av
            low = min(low, _MAX_REPEAT)
            high_text = "" if high is sre.MAXREPEAT or high > _MAX_REPEAT else str(high)
            out.append(f"(?:{whole_regex(list(sub))}){{{low},{high_text}}}")
        else:
            raise UnknownConstruct(op)
    return "".join(out)


def _char(code: int) -> str:
    return str(re2.escape(chr(code)))


def _class_char(code: int) -> str:
    char = chr(code)
    return "\\" + char if char in "\\]^-[" else char


def _class(items: list[Any]) -> str:
    parts: list[str] = []
    for op, av in items:
        if op is sre.NEGATE:
            parts.insert(0, "^")
        elif op is sre.LITERAL:
            parts.append(_class_char(av))
        elif op is sre.RANGE:
            parts.append(f"{_class_char(av[0])}-{_class_char(av[1])}")
        elif op is sre.CATEGORY and av in _CATEGORIES:
            parts.append(_CATEGORIES[av])
        else:
            raise UnknownConstruct(op)
    return "[" + "".join(parts) + "]"
