"""The common dialect: patterns that Python's parser and RE2 read as the same tree.

The stream's hold-back (prefixes.py) and window (patterns.py `max_match_chars`) are
derived from Python's parse of a pattern, while RE2 runs it. Where the two engines
read a pattern differently (`[[:digit:]]`: RE2 a digit, Python the set `[:digt` and a
`]`; `a{,2}`: RE2 the literal text, Python up to two `a`), the derivation describes a
different language and a match split across two stream events leaks. So a derivation
is trusted only for a pattern written wholly in this allow-list of constructs, which
both engines read alike; anything else (POSIX classes, `{,n}`, `\\p`, `\\C`, `\\Q`,
`(?P=`, `(?x)`, back-references, nested or set-operation classes, a lone `}`, ...)
gets the safe answer: hold everything the window allows. The list is an allow-list on
purpose: a construct nobody thought of is refused, not trusted.

Assertions (`^`, `$`, `\\b`, `\\B`, `\\A`) and what a class escape (`\\d`, `\\s`, `\\w`)
matches may differ in meaning between the engines: the derivations drop assertions and
hand class escapes back to RE2, so only the shape of the tree must agree. Pure: no I/O.
"""

from __future__ import annotations

import re

# Escapes both engines read alike outside and inside a class: class escapes, control
# characters, and any ASCII punctuation as itself.
_CLASS_ESCAPES = frozenset("dDsSwW")
_CONTROL_ESCAPES = frozenset("afnrtv")
_ASSERTION_ESCAPES = frozenset("bBA")
_HEX = frozenset("0123456789abcdefABCDEF")
_REPEAT = re.compile(r"\{[0-9]+(?:,[0-9]*)?\}")  # {n}, {n,}, {n,m}: a repeat in both
_NAMED_GROUP = re.compile(r"\(\?P<[A-Za-z_][A-Za-z0-9_]*>")
_FLAGS_GROUP = re.compile(r"\(\?[ims]*(?:-[ims]+)?[:)]")  # (?i) (?s:...) (?i-s:...)
_SET_OPERATIONS = ("&&", "--", "||", "~~")  # Python warns of future set operations


def read_alike(pattern: str) -> bool:
    """Whether Python's parser and RE2 read `pattern` as the same tree (False: unsure)."""
    at = 0
    end = len(pattern)
    while at < end:
        char = pattern[at]
        if char == "\\":
            width = _escape_width(pattern, at, in_class=False)
            if width == 0:
                return False
            at += width
        elif char == "[":
            at = _class_end(pattern, at)
            if at < 0:
                return False
        elif char == "{":
            repeat = _REPEAT.match(pattern, at)
            if repeat is None:  # `{,n}`, `{,}`, a literal brace: the engines differ
                return False
            at = repeat.end()
        elif char == "}":
            return False
        elif char == "(" and pattern.startswith("(?", at):
            group = _NAMED_GROUP.match(pattern, at) or _FLAGS_GROUP.match(pattern, at)
            if group is None or group.group() == "(?)":
                return False
            at = group.end()
        else:  # a literal, or one of `()|*+?.^$` (the same operators in both)
            at += 1
    return True


def _escape_width(pattern: str, at: int, *, in_class: bool) -> int:
    """How many characters the escape at `at` spans when both engines read it alike, else 0."""
    if at + 1 >= len(pattern):
        return 0
    code = pattern[at + 1]
    if code in _CLASS_ESCAPES or code in _CONTROL_ESCAPES:
        return 2
    if code in _ASSERTION_ESCAPES:
        return 0 if in_class else 2  # `[\b]` is a backspace to Python
    if code == "x":
        digits = pattern[at + 2 : at + 4]
        return 4 if len(digits) == 2 and all(d in _HEX for d in digits) else 0
    if code.isascii() and not code.isalnum():
        return 2  # punctuation stands for itself
    return 0  # back-references, octal, \p \C \Q \z \Z \N \u \x{..}: not alike, or unknown


def _class_end(pattern: str, at: int) -> int:
    """The index after the class that opens at `at`, or -1 when the engines may differ."""
    at += 1
    if pattern.startswith("^", at):
        at += 1
    if pattern.startswith("]", at):  # a leading `]`: a literal to both, but not listed
        return -1
    items = 0  # characters and ranges so far
    last_was_char = False  # the item before could start a range
    while at < len(pattern):
        char = pattern[at]
        if char == "]":
            return at + 1
        if char == "[" or pattern.startswith(_SET_OPERATIONS, at):
            return -1  # POSIX classes, nested sets, set operations
        if char == "-":
            if pattern.startswith("]", at + 1) or items == 0:
                at += 1  # a literal `-` first or last
                last_was_char = False
                items += 1
                continue
            if not last_was_char:
                return -1  # `[a-b-c]`, `[\d-z]`
            width = _class_char_width(pattern, at + 1)
            if width == 0:
                return -1
            at += 1 + width
            last_was_char = False
            continue
        if char == "\\":
            width = _escape_width(pattern, at, in_class=True)
            if width == 0:
                return -1
            last_was_char = pattern[at + 1] not in _CLASS_ESCAPES
        else:
            width = 1
            last_was_char = True
        at += width
        items += 1
    return -1  # unterminated: both refuse it anyway


def _class_char_width(pattern: str, at: int) -> int:
    """The width of a single character at `at` (a range's end), or 0 when it is not one."""
    if at >= len(pattern) or pattern[at] in "]-[":
        return 0
    if pattern[at] != "\\":
        return 1
    if pattern[at + 1 : at + 2] in _CLASS_ESCAPES:
        return 0
    return _escape_width(pattern, at, in_class=True)
