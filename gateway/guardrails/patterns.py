"""Admin-written regular expressions: checked at policy load, compiled for RE2.

Every pattern of a profile runs on RE2 (google-re2), a linear-time engine: a
pattern like `(a+)+$` that would backtrack for minutes in Python's `re` costs
microseconds here. RE2 refuses look-around, backreferences, possessive quantifiers,
counted repetitions past 1000 and programs past MAX_PROGRAM_BYTES; the check says
which, in words, beside RE2's terse error. So a pattern without `*`, `+` or `{n,}`
matches at most MAX_PATTERN_CHARS * RE2_MAX_REPEAT / 7 characters (`a{1000}` repeated),
and a stream holds back that width itself (`max_match_chars`). No I/O.
"""

from __future__ import annotations

import re2

from gateway.guardrails.dialect import read_alike

MAX_PATTERN_CHARS = 2000
# RE2 budgets memory per compiled program; a pattern that needs more is refused at
# load, not at the first request (`{1000}{1000}` blows up the automaton, not the CPU).
MAX_PROGRAM_BYTES = 8 << 20
# A keyword rule compiles to one RE2 program; past this many characters (all its keywords
# together) it nears MAX_PROGRAM_BYTES (2,000 keywords of 30 letters: 60,000), and each
# compile holds the interpreter for its whole length (the binding keeps the GIL). Checked
# when a team's profiles compile (guards.py), before RE2 sees the list.
MAX_KEYWORDS_CHARS = 64_000
UNBOUNDED_MATCH_CHARS = 256  # the stream window for a pattern with `*`/`+`/`{n,}`
RE2_MAX_REPEAT = 1000  # RE2's limit on a counted repetition, nested counts multiplied

# RE2's error code, as its Python binding gives it: the binding exposes only the
# message, whose start is the code's fixed text (RE2::ErrorCodeText); the rest echoes
# the offending piece of the pattern. A pattern Python's `re` accepts and RE2 refuses
# fails for one of these reasons.
_RE2_REFUSALS = (
    (
        "invalid repetition size",
        f"a counted repetition is too large (RE2 allows {RE2_MAX_REPEAT}, and nested "
        f"counts multiply: `((a{{100}}){{100}}){{100}}` repeats a million times)",
    ),
    (
        "pattern too large",
        f"the compiled pattern is larger than the {MAX_PROGRAM_BYTES >> 20} MiB RE2 allows "
        "(use fewer or smaller counted repetitions, or narrower classes)",
    ),
    (
        "invalid perl operator",
        "this `(?...)` form is not supported (look-around, `(?P=name)`, comments)",
    ),
    ("invalid escape sequence", "backreferences (`\\1`) and this escape are not supported"),
    ("bad repetition operator", "possessive quantifiers (`a++`) are not supported"),
)


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
    # RE2 alone judges: Python's `re` refuses valid RE2 (`\pL`, `\p{Greek}`, `\z`), and
    # the stream derivations trust Python's reading only where dialect.py says it agrees.
    if "C" in _escapes(pattern):
        return (
            "pattern uses `\\C` (any one byte): it can match part of a character; "
            "use `.` for any character"
        )
    try:
        compiled = re2.compile(pattern, re2_options())
    except re2.error as exc:
        return re2_refusal(exc)
    if compiled.fullmatch("") is not None:
        return "pattern matches the empty string (it would fire on every text)"
    if read_alike(pattern) and _widest(pattern) == 0:
        return "pattern matches only empty text, such as `\\b` or `^` alone (it would never fire)"
    return None


def _escapes(pattern: str) -> set[str]:
    """The characters escaped in `pattern` (`\\d` gives `d`; `\\\\C` escapes only the
    backslash)."""
    found, at = set(), pattern.find("\\")
    while 0 <= at < len(pattern) - 1:
        found.add(pattern[at + 1])
        at = pattern.find("\\", at + 2)
    return found


def _widest(pattern: str) -> int | None:
    """The longest text a pattern Python reads as RE2 does can match (the stdlib parser's
    width: MAXREPEAT or more for no bound); None when the parser balks."""
    from re import _parser  # type: ignore[attr-defined]  # the stdlib's width computation; no stub

    try:
        return int(_parser.parse(pattern).getwidth()[1])
    except Exception:
        return None


def keywords_problem(keywords: list[str]) -> str | None:
    """Why a keyword list cannot be a guardrail (None when it can)."""
    total = sum(len(word) for word in keywords)
    if total > MAX_KEYWORDS_CHARS:
        return (
            f"keywords total {total:,} characters, more than the {MAX_KEYWORDS_CHARS:,} a rule "
            "may have (RE2 compiles them into one program: use fewer or shorter keywords)"
        )
    return None


def re2_refusal(exc: re2.error) -> str:
    """Why RE2 refused a pattern, in words, with RE2's own message."""
    raw = exc.args[0] if exc.args else b""
    said = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    why = next((why for code, why in _RE2_REFUSALS if said.startswith(code)), None)
    head = "pattern is not a valid regular expression for the linear-time engine (RE2)"
    return f"{head}: {why} (RE2: {said})" if why else f"{head} (RE2: {said})"


def max_match_chars(pattern: str) -> int:
    """The longest text `pattern` can match: a stream holds back this much. Bounded widths
    are finite (the checks above cap them; see the module's docstring) and are returned
    whole, however wide: a cap would let a longer match through a stream whole.
    UNBOUNDED_MATCH_CHARS when the matches have no bound."""
    if not read_alike(pattern):
        # Python's parser may read the pattern otherwise than RE2 (dialect.py: `[[:digit:]]`),
        # so its width is not trusted. RE2's own program bounds RE2's reading when that has
        # no loop: a match runs each instruction at most once, each consuming at most a byte.
        if pattern_problem(pattern) is not None:  # no guardrail: `(?=a)`, `\C`
            return UNBOUNDED_MATCH_CHARS
        return max(UNBOUNDED_MATCH_CHARS, _program_size(pattern))
    from re import _parser  # type: ignore[attr-defined]  # its MAXREPEAT; no stub

    widest = _widest(pattern)
    if widest is None:  # a parse quirk: fall back to the cap rather than fail the load
        return UNBOUNDED_MATCH_CHARS
    if widest >= _parser.MAXREPEAT:  # `*`, `+`, `{n,}`: the parser's mark for no bound
        return UNBOUNDED_MATCH_CHARS
    return max(1, widest)


def _program_size(pattern: str) -> int:
    """The instructions of RE2's program for `pattern`, one `pattern_problem` accepts (0
    when this binding hides them)."""
    compiled = re2.compile(pattern, re2_options())
    size = getattr(getattr(compiled, "_regexp", None), "ProgramSize", None)
    return int(size()) if size is not None else 0
