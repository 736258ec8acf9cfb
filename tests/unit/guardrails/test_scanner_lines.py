"""`Scanner.lines_clean`: names checked together say clean only when each, scanned alone,
has no finding (so a schema's property names may be cleared in one pass)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner


def pattern(regex: str) -> Scanner:
    return Scanner([RuleSource(Rule("p", DetectorKind.PATTERN, GuardAction.BLOCK), regex)])


SCANNERS = [
    pattern("^PROJECT_[A-Z]+$"),
    pattern(r"^a"),
    pattern(r"b$"),
    pattern(r"\bab\b"),
    pattern(r"(?i)^ab|ba$"),
    pattern(r"\Aab"),
    pattern(r"ab\z"),
    pattern(r"(?-m:^ab$)"),
    Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK))]),
    Scanner([RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT))]),
]
PIECES = ["a", "b", "_", " ", "\n", "\u200b", "PROJECT_", "Z", "@x.io", "AKIAIOSFODNN7EXAMPLE"]
LINE = st.lists(st.sampled_from(PIECES), max_size=6).map("".join)


@pytest.mark.parametrize("scanner", SCANNERS)
@given(lines=st.lists(LINE, min_size=2, max_size=4))
def test_clean_lines_are_each_clean_alone(scanner, lines):
    """When lines_clean says so, `find` on each line alone finds nothing."""
    if scanner.lines_clean(lines):
        assert all(scanner.find(line) == [] for line in lines)


@pytest.mark.parametrize(
    ("scanner", "lines"),
    [
        (pattern("^PROJECT_[A-Z]+$"), ["a", "PROJECT_ZEUS", "b"]),
        (pattern(r"\APROJECT"), ["a", "PROJECT_ZEUS"]),
        (pattern(r"ZEUS\z"), ["PROJECT_ZEUS", "b"]),
    ],
)
def test_a_name_among_others_is_not_cleared(scanner, lines):
    """An anchored match on one name keeps the batch from clearing them."""
    assert not scanner.lines_clean(lines)


def test_clean_names_are_cleared_in_one_pass():
    """The common case: names with nothing in them are cleared together."""
    assert pattern("^PROJECT_[A-Z]+$").lines_clean([f"field_{i}" for i in range(50)])
