"""Telltale characters: every match on ASCII text contains one, so a text without any
may skip the combined scan; never too small a set (a missed match is a leaked secret)."""

import itertools

import pytest
import re2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.guardrails.detectors import BUILT_IN
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.patterns import re2_options
from gateway.guardrails.scanner import Rule, RuleSource, Scanner, keywords_pattern
from gateway.guardrails.telltales import telltales

SPECS = [spec for specs in BUILT_IN.values() for spec in specs]
ALPHABET = "aAb-1 z"  # a few of each kind: lower, upper, punctuation, digit, space


def matches(pattern: str, text: str) -> bool:
    return re2.compile(pattern, re2_options()).search(text) is not None


def test_the_built_in_detectors_each_have_telltales():
    """The whole point: the baseline's rules all make a claim (an e-mail needs `@`, a card
    a digit, a secret `A`, `_`, `-`, `:`, `=` or `J`), so prose without them skips RE2."""
    for spec in SPECS:
        assert telltales(spec.regex), spec.regex
    email = BUILT_IN[DetectorKind.EMAIL][0].regex
    assert telltales(email) == frozenset("@")
    # A card's layouts hold spaces, but prose holds spaces everywhere: their digits are
    # the telltale (the space let every text of a profile with cards through RE2).
    for spec in BUILT_IN[DetectorKind.CREDIT_CARD]:
        found = telltales(spec.regex)
        assert found is not None and " " not in found, spec.regex


@pytest.mark.parametrize("spec", SPECS, ids=[s.regex[:24] for s in SPECS])
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_match_of_a_built_in_detector_holds_a_telltale(spec, data):
    found = telltales(spec.regex)
    assert found is not None
    unanchored = spec.regex.replace(r"\b", "")
    match = data.draw(
        st.from_regex(unanchored, fullmatch=True, alphabet=st.characters(max_codepoint=127))
    )
    assume(matches(spec.regex, match))
    assert not found.isdisjoint(match)


# Small regexes over a small alphabet, checked against every short text over it.
ATOMS = st.sampled_from(
    ["a", "A", "b", "-", "1", " ", "z", "[ab]", "[^a]", r"\d", r"\w", r"\s", ".", "[A-Z]", r"\b"]
)


def _regex(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(children, min_size=1, max_size=4).map("".join),
        st.lists(children, min_size=2, max_size=3).map(lambda xs: "(?:" + "|".join(xs) + ")"),
        st.tuples(children, st.sampled_from(["?", "*", "+", "{2}", "{0,2}", "{1,2}", "*?"])).map(
            lambda t: f"(?:{t[0]}){t[1]}"
        ),
    )


REGEXES = st.recursive(ATOMS, _regex, max_leaves=8)
SHORT_TEXTS = ["".join(t) for n in range(5) for t in itertools.product(ALPHABET, repeat=n)]


@settings(max_examples=150, deadline=None)
@given(regex=REGEXES, caseless=st.booleans())
def test_no_short_text_without_a_telltale_matches(regex, caseless):
    """Exhaustive over every text of up to 4 characters of a mixed alphabet: a text that
    matches contains a telltale (branches, optional parts, repeats, classes, case folding)."""
    pattern = ("(?i)" if caseless else "") + regex
    assume(re2.compile(pattern, re2_options()).fullmatch("") is None)
    found = telltales(pattern)
    if found is None:
        return
    compiled = re2.compile(pattern, re2_options())
    for text in SHORT_TEXTS:
        if compiled.search(text) is not None:
            assert not found.isdisjoint(text), (pattern, text)


KEYWORDS = st.lists(
    st.text(alphabet=st.sampled_from("aZk-. _\u212a\u017f\u0430é1"), min_size=1, max_size=6),
    min_size=1,
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(keywords=KEYWORDS, data=st.data())
def test_a_keyword_in_any_case_holds_a_telltale(keywords, data):
    """Keyword lists (case-insensitive, folded): the Kelvin sign and long s fold to ASCII
    letters; a keyword with a letter no ASCII text has never matches ASCII text."""
    pattern = keywords_pattern(keywords)
    found = telltales(pattern)
    assert found is not None
    word = data.draw(st.sampled_from(keywords))
    flipped = "".join(c.swapcase() if data.draw(st.booleans()) else c for c in word)
    text = f"x {flipped} y"
    assume(text.isascii() and matches(pattern, text))
    assert not found.isdisjoint(text)


@pytest.mark.parametrize(
    "pattern",
    [r"\b", r"a*", r"(?:a|b?)c*", r"(?i)\b(?:x|)", r"(?:a{0,3})"],
)
def test_no_claim_for_what_may_match_without_a_known_character(pattern):
    assert telltales(pattern) is None


def test_an_admins_own_pattern_turns_the_skip_off():
    """`[[:digit:]]` is a digit class to RE2 but a set of punctuation and letters to
    Python's parser: only RE2 reads an admin's pattern, so its rules make no claim."""
    scanner = Scanner(
        [RuleSource(Rule("id", DetectorKind.PATTERN, GuardAction.REDACT), r"[[:digit:]]{4}")]
    )
    found, _, _ = scanner.scan_stream("code 1234 ok", 0, final=True)
    assert [f.rule.name for f in found] == ["id"]
    assert scanner._telltales is None


STREAM_TEXTS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                " the",
                " quick",
                "re-encoding",
                "jane.doe@corp.example.com",
                "4111 1111 1111 1111",
                "AKIAZ7Q2W9X4C6V8B1N3",
                'token = "q8Xr2LmZ7vK1pT9w"',
                "sk-",
                "-----BEGIN RSA PRIVATE KEY-----\n",
                "eyJhbGciOiJIUzI1.eyJzdWIiOiIx.SflKxwRJSMeKKF2QT4",
                "ghp_",
                "@",
                "_",
            ]
        ),
        st.text(alphabet=st.characters(max_codepoint=127), max_size=10),
    ),
    min_size=1,
    max_size=8,
)
BASELINE = Scanner(
    [
        RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK)),
        RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT)),
        RuleSource(Rule("credit_card", DetectorKind.CREDIT_CARD, GuardAction.REDACT)),
        RuleSource(Rule("words", DetectorKind.KEYWORDS, GuardAction.REDACT), keywords=("hush",)),
    ]
)
UNGATED = Scanner(
    [
        RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK)),
        RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT)),
        RuleSource(Rule("credit_card", DetectorKind.CREDIT_CARD, GuardAction.REDACT)),
        RuleSource(Rule("words", DetectorKind.KEYWORDS, GuardAction.REDACT), keywords=("hush",)),
    ]
)
UNGATED._telltales = None


@settings(max_examples=400, deadline=None)
@given(pieces=STREAM_TEXTS, data=st.data())
def test_the_stream_scan_with_the_skip_finds_what_it_finds_without(pieces, data):
    text = "".join(pieces)
    start = data.draw(st.integers(0, len(text)))
    final = data.draw(st.booleans())
    assert BASELINE._telltales  # the skip is on
    assert BASELINE.scan_stream(text, start, final=final) == UNGATED.scan_stream(
        text, start, final=final
    )
