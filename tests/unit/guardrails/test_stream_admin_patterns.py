"""An admin's own block pattern, its match split across two stream events at every
offset: no byte of the match leaves, whatever constructs the pattern uses (including
those Python's parser and RE2 read differently)."""

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.patterns import pattern_problem
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from tests.unit.guardrails.test_stream_scanner import chat_event, chat_text, run

LEAD = "Say: "
TRAIL = " and then more words."


def blocking(pattern: str) -> Scanner:
    return Scanner([RuleSource(Rule("admin", DetectorKind.PATTERN, GuardAction.BLOCK), pattern)])


def assert_split_anywhere_leaks_nothing(scanner: Scanner, text: str) -> None:
    """Whole, the text is blocked; split in two at any offset, it is blocked too, and
    what went out before the block ends before the earliest match began."""
    findings = scanner.find(text)
    assert findings, "the whole text must match"
    begin = min(f.begin for f in findings)
    for split in range(1, len(text)):
        events = [chat_event(text[:split]), chat_event(text[split:]), chat_event(finish="stop")]
        out, end, _ = run(scanner, "chat", events)
        released = chat_text(out)
        assert end is not None and end.code == "content_policy_violation", (split, released)
        assert text.startswith(released) and len(released) <= begin, (split, released)


@pytest.mark.parametrize(
    ("pattern", "match"),
    [
        ("[[:digit:]]{8}", "12345678"),  # the reported leak: "code 1234" | "5678 x"
        ("a{,2}", "a{,2}"),  # RE2: the literal text
        ("[[:alpha:]]+-[[:digit:]]{3}", "abc-123"),
        ("[^[:space:]]{6}", "xyzzy!"),
    ],
)
def test_a_pattern_python_reads_differently_still_blocks_split_anywhere(pattern, match):
    assert pattern_problem(pattern) is None
    assert_split_anywhere_leaks_nothing(blocking(pattern), f"code {match} x")


@pytest.mark.parametrize(
    ("pattern", "match"),
    [
        (r"\p{Han}{2}", "秘密"),  # Unicode classes: valid RE2, refused by Python's `re`
        (r"\pL+-\pN{3}", "Ωmega-123"),
        (r"\PZ{4}-\d{4}", "Zeus-2024"),
    ],
)
def test_a_pattern_only_re2_reads_is_accepted_and_blocks_split_anywhere(pattern, match):
    assert pattern_problem(pattern) is None
    assert_split_anywhere_leaks_nothing(blocking(pattern), f"code {match} x")


def test_a_pattern_anchored_at_the_texts_end_blocks_at_the_end():
    r"""`\z` (RE2: the end of the text; Python's `re` has none before 3.14)."""
    assert pattern_problem(r"ZEUS\z") is None
    assert blocking(r"ZEUS\z").find("PROJECT_ZEUS")
    assert not blocking(r"ZEUS\z").find("ZEUS is a name")


def test_the_reported_reproduction():
    """`[[:digit:]]{8}`, "code 1234" then "5678 x": blocked, nothing of the code sent."""
    events = [chat_event("code 1234"), chat_event("5678 x"), chat_event(finish="stop")]
    out, end, _ = run(blocking("[[:digit:]]{8}"), "chat", events)
    assert end is not None and end.code == "content_policy_violation"
    assert not any(c.isdigit() for c in chat_text(out))


# --- the property: random admin patterns, each with a text RE2 matches --------------------

# (pattern, a text RE2 reads the pattern to match): the common dialect and the constructs
# where the engines differ (RE2's reading is the sample: it is what runs).
_ATOMS = [
    ("k", "k"),
    ("7", "7"),
    (r"\d", "4"),
    (r"\w", "q"),
    (r"\s", " "),
    (r"\.", "."),
    (".", "z"),
    ("[a-f]", "c"),
    ("[^ ]", "#"),
    (r"[\d-]", "-"),
    (r"\x41", "A"),
    ("[[:digit:]]", "5"),
    ("[[:alpha:]]", "g"),
    ("[[:^digit:]]", "h"),
    ("[^[:space:]]", "!"),
    ("[[:upper:][:digit:]]", "Q"),
    ("[]x]", "]"),
    ("[a-c-e]", "-"),
    (r"\pN", "3"),
    (r"\p{L}", "m"),
    (r"\PN", "n"),
    (r"\C", "c"),
    (r"\Qa.b\E", "a.b"),
    (r"\x{42}", "B"),
    ("(?P<g>u)", "u"),
    ("[a&&b]", "&"),
]
# (suffix, how many times the atom's sample repeats; None: the suffix is literal to RE2)
_QUANTIFIERS = [
    ("", 1),
    ("{3}", 3),
    ("{2,4}", 2),
    ("{1,}", 2),
    ("+", 3),
    ("?", 1),
    ("*", 2),
    ("{,3}", None),  # RE2: the literal text "{,3}"
    ("{,}", None),
]


@st.composite
def _piece(draw: st.DrawFn) -> tuple[str, str]:
    atom, sample = draw(st.sampled_from(_ATOMS))
    suffix, times = draw(st.sampled_from(_QUANTIFIERS))
    if times is None:
        return atom + suffix, sample + suffix
    return atom + suffix, sample * times


@st.composite
def admin_pattern(draw: st.DrawFn) -> tuple[str, str]:
    pieces = draw(st.lists(_piece(), min_size=1, max_size=4))
    pattern = "".join(p for p, _ in pieces)
    sample = "".join(s for _, s in pieces)
    shape = draw(st.sampled_from(["plain", "group", "alternative", "caseless"]))
    if shape == "group":
        pattern = f"(?:{pattern})"
    elif shape == "alternative":
        pattern = f"zzq|{pattern}" if draw(st.booleans()) else f"{pattern}|zzq"
    elif shape == "caseless":
        pattern = f"(?i){pattern}"
    return pattern, sample


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(drawn=admin_pattern())
def test_no_admin_pattern_leaks_a_match_split_across_two_events(drawn):
    """Property: whatever the pattern (accepted at policy check), a text holding one of its
    matches, split at every offset into two events, is blocked with none of it sent."""
    pattern, sample = drawn
    assume(pattern_problem(pattern) is None)
    scanner = blocking(pattern)
    text = LEAD + sample + TRAIL
    assume(scanner.find(text))  # the sample is RE2's reading; `\b`-free, so it matches
    assert_split_anywhere_leaks_nothing(scanner, text)
