"""The common dialect: what both engines read alike is trusted, anything else is not."""

import re
import re._constants as sre_constants
import re._parser as sre_parse

import pytest
import re2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.guardrails.detectors import BUILT_IN
from gateway.guardrails.dialect import read_alike
from gateway.guardrails.patterns import UNBOUNDED_MATCH_CHARS, max_match_chars, pattern_problem
from gateway.guardrails.prefixes import ANY_TEXT, prefix_regex
from gateway.guardrails.scanner import keywords_pattern

SPECS = [spec for specs in BUILT_IN.values() for spec in specs]


@pytest.mark.parametrize("spec", SPECS, ids=[s.regex[:24] for s in SPECS])
def test_every_built_in_pattern_is_read_alike(spec):
    """The built-in detectors keep their narrow hold (not the whole window)."""
    assert read_alike(spec.regex)


def test_keyword_patterns_are_read_alike():
    assert read_alike(keywords_pattern(["Project Nightjar", "c++", "a_b", "x{y}", "naïve"]))


@pytest.mark.parametrize(
    "pattern",
    [
        "[[:digit:]]{8}",  # RE2: a digit; Python: the set `[:digt` then `]`
        "[^[:space:]]+x",
        "a{,2}",  # RE2: the literal text; Python: up to two `a`
        "a{,}",
        "a}",
        "a{x}",
        r"\pN{4}",
        r"\p{Greek}",
        r"\C",
        r"\Qa.b\E",
        r"(?P<n>a)(?P=n)",
        r"(a)\1",
        r"\101",
        r"\x{41}",
        r"\z",
        r"\Z",
        "(?x) a b",
        "(?U)a+",
        "(?#note)a",
        "[]a]",
        "[a-c-e]",
        r"[\d-z]",
        "[a&&b]",
        "[a--b]",
        "[a||b]",
        "[a~~b]",
        r"[\b]",
        "(?<n>a)",
        "(?=a)b",
    ],
)
def test_a_construct_the_engines_may_read_differently_is_not_trusted(pattern):
    """Hold everything the window allows: the window, or, for a valid pattern without a
    loop, its RE2 program's size when larger (`\\pN{4}`: a match reads each instruction
    at most once, a byte each)."""
    assert not read_alike(pattern)
    assert prefix_regex(pattern) == ANY_TEXT
    assert max_match_chars(pattern) >= UNBOUNDED_MATCH_CHARS


def test_a_posix_class_is_accepted_at_policy_check():
    """It is valid RE2 (no warning of Python's escapes the check)."""
    assert pattern_problem("[[:digit:]]{8}") is None


# --- differential: on the dialect, Python and RE2 answer alike -------------------------

_ATOMS = st.sampled_from(
    [
        "a",
        "b",
        "1",
        " ",
        "-",
        ".",
        r"\d",
        r"\w",
        r"\s",
        r"\.",
        r"\-",
        r"\x41",
        r"\t",
        "[a-c]",
        "[^a1]",
        "[-a]",
        "[a-]",
        r"[\d.-]",
        r"[\w\s]",
        "[A-Za-z0-9_-]",
        r"\b",
        "^",
        "$",
    ]
)
_QUANTIFIERS = st.sampled_from(["", "", "*", "+", "?", "{2}", "{1,3}", "{2,}", "*?", "{0,2}?"])


def _dialect_pattern() -> st.SearchStrategy[str]:
    leaf = st.builds(lambda a, q: a + q, _ATOMS, _QUANTIFIERS)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        seq = st.lists(inner, min_size=1, max_size=4).map("".join)
        return st.one_of(
            seq,
            st.builds(lambda s, q: f"(?:{s}){q}", seq, _QUANTIFIERS),
            st.builds(lambda s, q: f"({s}){q}", seq, _QUANTIFIERS),
            st.builds(lambda a, b: f"{a}|{b}", seq, seq),
            st.builds(lambda s: f"(?i:{s})", seq),
        )

    return st.recursive(leaf, extend, max_leaves=6)


# Characters both engines class alike (no \v, no \x1c-\x1f, no newline for `$`).
_TEXT = st.text(alphabet="ab1A -._\tc9Z", max_size=10)


def _repeats_an_empty_match(pattern: str) -> bool:
    """Does the pattern repeat (more than once) something that can match empty, like
    `(?:a*)*`? Both engines read such a tree alike, but stop its empty iterations at
    different points, so their spans may differ: a difference of matching, not of the
    tree the dialect vouches for."""

    def walk(items) -> bool:  # type: ignore[no-untyped-def]
        for op, av in items:
            if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
                _, high, body = av
                if high > 1 and body.getwidth()[0] == 0:
                    return True
                inner = [body]
            elif op is sre_constants.SUBPATTERN:
                inner = [av[3]]
            elif op is sre_constants.BRANCH:
                inner = av[1]
            else:
                continue
            if any(walk(sub) for sub in inner):
                return True
        return False

    return walk(sre_parse.parse(pattern))


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(pattern=_dialect_pattern(), texts=st.lists(_TEXT, min_size=1, max_size=8))
def test_on_the_dialect_python_and_re2_match_alike(pattern, texts):
    """Differential: a pattern read alike matches the same texts, with the same spans, in
    both engines (evidence that the allow-list is right, not only safe), except where
    it repeats an empty match (see _repeats_an_empty_match)."""
    assume(read_alike(pattern))
    try:
        ours = re.compile(pattern)
        theirs = re2.compile(pattern)
    except Exception:
        assume(False)
    assume(not _repeats_an_empty_match(pattern))
    for text in texts:
        mine, its = ours.search(text), theirs.search(text)
        assert (mine and mine.span()) == (its and its.span()), (pattern, text)
