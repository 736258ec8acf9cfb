"""The prefix language of a pattern: every prefix of every match is held back, prose is not."""

import pytest
import re2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.guardrails.detectors import BUILT_IN
from gateway.guardrails.patterns import re2_options
from gateway.guardrails.prefixes import ANY_TEXT, prefix_regex, tail_regex

SPECS = [spec for specs in BUILT_IN.values() for spec in specs]


def tail(pattern: str) -> re2._Regexp:
    options = re2_options()
    options.max_mem = 32 << 20
    return re2.compile(tail_regex([pattern]), options)


@pytest.mark.parametrize("spec", SPECS, ids=[s.regex[:24] for s in SPECS])
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_prefix_of_every_match_is_in_progress(spec, data):
    """Safety: whatever a built-in pattern matches, each of its prefixes, at the end of a
    text, is reported in progress from its first character (or earlier)."""
    unanchored = spec.regex.replace(r"\b", "")
    match = data.draw(st.from_regex(unanchored, fullmatch=True))
    assume(re2.fullmatch(unanchored, match) is not None)  # Python's \s and \d are wider
    regex = tail(spec.regex)
    for end in range(1, len(match) + 1):
        text = "Some words: " + match[:end]
        found = regex.search(text)
        assert found is not None and found.start() <= len("Some words: ")


@given(
    words=st.lists(st.sampled_from(["the", "cat", "sat", "on", "a", "mat.", "Yes,"]), min_size=1)
)
def test_prose_that_ends_in_a_space_holds_nothing(words):
    text = " ".join(words) + " "
    regex = re2.compile(tail_regex([s.regex for s in SPECS]), _big())
    found = regex.search(text)
    assert found is not None and found.start() == len(text)


def _big() -> re2.Options:
    options = re2_options()
    options.max_mem = 32 << 20
    return options


@pytest.mark.parametrize(
    ("pattern", "text", "held"),
    [
        (r"\bsk-[A-Za-z0-9_-]{32,250}", "your key is sk-ab", "sk-ab"),
        (r"\bsk-[A-Za-z0-9_-]{32,250}", "your key is s", "s"),
        (r"\bsk-[A-Za-z0-9_-]{32,250}", "your key is sx", ""),
        (r"(?i)(?:secret|token)", "a TOK", "TOK"),
        (r"-----BEGIN[A-Z ]{0,30}PRIVATE KEY-----(?s:.)*?-----END", "x -----BEG", "-----BEG"),
        (
            r"-----BEGIN[A-Z ]{0,30}PRIVATE KEY-----(?s:.)*?-----END",
            "-----BEGIN PRIVATE KEY-----\nMII",
            "-----BEGIN PRIVATE KEY-----\nMII",
        ),
        (r"\b(?:\d[ -]?){12,18}\d\b", "card 4111 1111", "4111 1111"),
        (r"AKIA[A-Z0-9]{16}", "AKIAZ7Q2W9X4C6V8B1N3X", "A"[:0] + "AKIAZ7Q2W9X4C6V8B1N3X"[21:]),
        (r"ab(?:cd|ef)+", "xx abcdef", "abcdef"),
        (r"a{3}b", "aaaa", "aaa"),
    ],
)
def test_the_held_tail(pattern, text, held):
    found = tail(pattern).search(text)
    assert found is not None and text[found.start() :] == held


def test_an_unknown_construct_holds_everything_the_window_allows():
    assert prefix_regex(r"(a)\1") == ANY_TEXT  # a backreference: no prefix language derived
