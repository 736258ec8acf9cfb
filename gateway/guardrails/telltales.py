"""Telltale characters: a set of ASCII characters at least one of which every match of a
pattern contains, on ASCII text (`@` for an e-mail address, a digit for a card number).

An ASCII text with none of a side's telltales cannot match any of its patterns, so the
stream scan skips RE2's combined pass for it: a C call that, cold in a busy server,
costs ten times a pure-Python look at the text's characters. The set is derived from the
pattern's syntax tree and must never be too small (a missed match lets a secret out):
every construct this module does not know makes no claim, and the character class of
each single-character element is asked of RE2 itself, character by character. Pure.
"""

from __future__ import annotations

from functools import lru_cache
from re import _constants as sre  # type: ignore[attr-defined]  # the stdlib's parser; no stub
from re import _parser  # type: ignore[attr-defined]
from typing import Any

import re2

from gateway.guardrails.patterns import re2_options
from gateway.guardrails.prefixes import UnknownConstruct, is_caseless, whole_regex

ASCII = tuple(chr(code) for code in range(128))
_ONE_CHARACTER = (sre.LITERAL, sre.NOT_LITERAL, sre.IN, sre.ANY)


def telltales(pattern: str) -> frozenset[str] | None:
    """ASCII characters one of which is in every match of `pattern` on ASCII text (the
    empty set: it never matches ASCII text), or None when no such set is known.

    `pattern` must be one Python's parser reads as RE2 does: the built-in detectors and
    keyword lists, not an admin's pattern (`[[:digit:]]`, `x{,3}` read differently)."""
    try:
        tree = _parser.parse(pattern)
        caseless = is_caseless(tree, tree.state.flags)
        return _of_sequence(list(tree), caseless)
    except Exception:  # a parse surprise: no claim
        return None


def _of_sequence(items: list[Any], caseless: bool) -> frozenset[str] | None:
    """A match of a sequence matches every element: any one element's set will do, so take
    the one least likely in prose (the fewer texts have one, the more skip the scan)."""
    best: frozenset[str] | None = None
    for item in items:
        found = _of_item(item, caseless)
        if found is not None and (best is None or _weight(found) < _weight(best)):
            best = found
    return best


def _of_item(item: tuple[Any, Any], caseless: bool) -> frozenset[str] | None:
    op, av = item
    if op in _ONE_CHARACTER:
        return _matched_by(whole_regex([item]), caseless)
    if op is sre.SUBPATTERN:
        return _of_sequence(list(av[3]), caseless)
    if op is sre.BRANCH:  # a match matches one branch: each needs a set, and all count
        union: set[str] = set()
        for branch in av[1]:
            found = _of_sequence(list(branch), caseless)
            if found is None:
                return None
            union |= found
        return frozenset(union)
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and av[0] >= 1:
        return _of_sequence(list(av[2]), caseless)
    return None  # an assertion, an optional part, anything else: no claim


@lru_cache(maxsize=1024)
def _matched_by(regex: str, caseless: bool) -> frozenset[str]:
    """The ASCII characters a one-character regex matches, as RE2 (the engine that scans)
    reads it, case folding included."""
    try:
        compiled = re2.compile(("(?i)" if caseless else "") + regex, re2_options())
    except re2.error as exc:
        raise UnknownConstruct(regex) from exc
    return frozenset(c for c in ASCII if compiled.fullmatch(c) is not None)


def _weight(chars: frozenset[str]) -> int:
    """How common the characters are in prose: the space most (about one character in six:
    a card layout's space would let nearly every text through, where its digits do not),
    then lower case, then sentence punctuation, then capitals and digits, then the rest."""
    return sum(
        32 if c == " " else 8 if c.islower() else 4 if c in ".,'\n" else 2 if c.isalnum() else 1
        for c in chars
    )
