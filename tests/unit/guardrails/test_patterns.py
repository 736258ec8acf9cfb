"""Admin patterns at `policy check`: RE2's refusal explained by its reason, not a guess."""

import pytest

from gateway.guardrails.patterns import pattern_problem

HEAD = "pattern is not a valid regular expression for the linear-time engine (RE2): "


@pytest.mark.parametrize(
    ("pattern", "reason", "not_said"),
    [
        ("((a{100}){100}){100}", "a counted repetition is too large", "look-around"),
        ("(a{1000}){2}", "a counted repetition is too large", "possessive"),
        (r"[^\n]{1000}" * 60, "the compiled pattern is larger than the 8 MiB", "look-around"),
        ("(?=a)b", "look-around", "repetition"),
        ("(?<!a)b", "look-around", "repetition"),
        ("(?P<n>a)(?P=n)", "(?P=name)", "repetition"),
        (r"(a)\1", "backreferences (`\\1`)", "repetition"),
        ("a++", "possessive quantifiers", "look-around"),
    ],
)
def test_each_refusal_names_its_own_reason(pattern, reason, not_said):
    """The message says why RE2 refused this pattern, and quotes RE2's own words."""
    problem = pattern_problem(pattern)
    assert problem is not None and problem.startswith(HEAD), problem
    assert reason in problem and not_said not in problem
    assert "(RE2: " in problem


def test_a_large_but_legal_repetition_passes():
    """Up to RE2's limits a counted repetition is fine."""
    assert pattern_problem("(a{10}){100}") is None
    assert pattern_problem(r"[^\n]{1000}" * 10) is None


@pytest.mark.parametrize("pattern", [r"\b", r"\b\b", r"(?m)^\b", r"\b(?:)\b"])
def test_a_pattern_that_matches_only_empty_text_is_refused(pattern):
    """Empty matches never fire (a scan skips them): such a rule would do nothing, so
    `policy check` says so rather than accept it (guardrails probe: `\\b` passed)."""
    problem = pattern_problem(pattern)
    assert problem is not None and "only empty text" in problem


def test_a_word_boundary_around_a_word_is_fine():
    assert pattern_problem(r"\bsecret\b") is None


@pytest.mark.parametrize(
    "pattern", [r"\pL+", r"\p{Greek}+", r"\PN{2}", r"\pN{4}", r"ab\z", r"\Aab", r"\\C"]
)
def test_valid_re2_that_pythons_re_refuses_is_accepted(pattern):
    r"""RE2 runs the patterns, so RE2 judges them: Unicode classes and `\z` are valid."""
    assert pattern_problem(pattern) is None


@pytest.mark.parametrize("pattern", [r"\C", r"a\Cb", r"[a-z]\C+"])
def test_any_one_byte_is_refused(pattern):
    r"""`\C` matches one byte, so a match could end inside a character: refused, in words."""
    problem = pattern_problem(pattern)
    assert problem is not None and "\\C" in problem and "use `.`" in problem
