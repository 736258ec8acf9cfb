"""Admin-written regular expressions: checked at policy load, compiled for RE2.

Every pattern of a profile runs on RE2 (google-re2), a linear-time engine: a
pattern like `(a+)+$` that would backtrack for minutes in Python's `re` costs
microseconds here. RE2 refuses look-around and backreferences; the check says so
instead of RE2's terse error. No I/O.
"""

from __future__ import annotations

import re
import warnings

import re2

from gateway.guardrails.dialect import read_alike

MAX_PATTERN_CHARS = 2000
# RE2 budgets memory per compiled program; a pattern that needs more is refused at
# load, not at the first request (`{1000}{1000}` blows up the automaton, not the CPU).
MAX_PROGRAM_BYTES = 8 << 20
UNBOUNDED_MATCH_CHARS = 256  # the stream window for a pattern with `*`/`+`/`{n,}`


def re2_options() -> re2.Options:
    options = re2.Options()
    options.max_mem = MAX_PROGRAM_BYTES
    options.log_errors = False
    return options


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be a guardrail (None when it can)."""
    if not pattern:
        return "pattern is empty"
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"pattern is longer than {MAX_PATTERN_CHARS} characters"
    try:
        with warnings.catch_warnings():
            # "Possible nested set" (`[[:digit:]]`): a hint about Python's future reading;
            # RE2 runs the pattern, and the stream derivations do not trust Python's here.
            warnings.simplefilter("ignore", FutureWarning)
            re.compile(pattern)
    except re.error as exc:
        return f"pattern is not a valid regular expression: {exc}"
    except (OverflowError, RecursionError):
        return "pattern is not a valid regular expression: too large"
    try:
        compiled = re2.compile(pattern, re2_options())
    except re2.error:
        return (
            "pattern is not a valid regular expression for the linear-time engine (RE2): "
            "look-around, backreferences and possessive quantifiers are not supported"
        )
    if compiled.fullmatch("") is not None:
        return "pattern matches the empty string (it would fire on every text)"
    return None


def max_match_chars(pattern: str) -> int:
    """The longest text `pattern` can match, capped at UNBOUNDED_MATCH_CHARS (the cap, too,
    when Python's parser might read the pattern differently from RE2: dialect.py)."""
    if not read_alike(pattern):
        return UNBOUNDED_MATCH_CHARS
    from re import _parser  # type: ignore[attr-defined]  # the stdlib's width computation; no stub

    try:
        _, widest = _parser.parse(pattern).getwidth()
    except Exception:  # a parse quirk: fall back to the cap rather than fail the load
        return UNBOUNDED_MATCH_CHARS
    return max(1, min(int(widest), UNBOUNDED_MATCH_CHARS))
