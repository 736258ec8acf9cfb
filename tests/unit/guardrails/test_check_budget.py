"""What a check may cost: inline on the event loop only when small, and never more than
MAX_MATCHES matches per request or answer (past them, a block naming the rule)."""

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import ContentPolicyViolation
from gateway.guardrails.check import (
    INLINE_CHARS,
    INLINE_MATCHES,
    MAX_MATCHES,
    check_answer,
    check_answer_inline,
    check_request,
    check_request_inline,
)
from gateway.guardrails.decision import Blocked, BlockReason, GuardrailHit, Passed
from gateway.guardrails.kinds import DetectorKind, GuardAction, Where
from gateway.guardrails.refusals import refusal
from gateway.guardrails.scanner import MatchBudget, OutOfMatches, Rule, RuleSource, Scanner

PII = Scanner(
    [
        RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK)),
        RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT)),
        RuleSource(Rule("ip_address", DetectorKind.IP_ADDRESS, GuardAction.REDACT)),
        RuleSource(Rule("us_ssn", DetectorKind.US_SSN, GuardAction.BLOCK)),
    ]
)


def chat(*contents: str) -> dict:
    return {"messages": [{"role": "user", "content": c} for c in contents]}


FRAGMENTS = st.sampled_from(
    [
        "hello ",
        "10.0.0.1 ",
        "v1.2.3.4 ",
        "a@b.co ",
        "ssn 123-45-6789 ",
        "AKIAZ7Q2W9X4C6V8B1N3 ",
        "\uff48\uff45\uff4c\uff4c\uff4f ",  # full-width "hello"
        "x" * 500,
    ]
)
TEXTS = st.lists(FRAGMENTS, max_size=120).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=4))
def test_inline_decides_as_the_whole_check_or_hands_over(contents):
    """Inline, a check gives the whole check's decision, or None (run it on a thread)."""
    body = chat(*contents)
    inline = check_request_inline(PII, "chat", body)
    whole = check_request(PII, "chat", body)
    assert inline is None or inline == whole
    small = sum(map(len, contents)) <= 2000 and all(c.isascii() for c in contents)
    if small and "".join(contents).count(".") <= 8 and "@" not in "".join(contents):
        assert inline is not None


def test_a_long_clean_text_is_checked_inline():
    """200 KB of prose costs ~0.5 ms: no thread hop."""
    body = chat("The quarterly numbers look fine. " * 6000)
    assert isinstance(check_request_inline(PII, "chat", body), Passed)


def test_a_dense_text_is_handed_over_after_a_few_matches():
    """A megabyte of addresses: the inline check gives up after INLINE_MATCHES of them."""
    body = chat("10.0.0.1 " * 120_000)
    started = time.perf_counter()
    assert check_request_inline(PII, "chat", body) is None
    assert time.perf_counter() - started < 0.05
    assert INLINE_MATCHES < 100


def test_long_non_ascii_or_overlong_text_is_handed_over():
    """Folding is dear for non-ASCII text; a text past INLINE_CHARS is never inline."""
    assert check_request_inline(PII, "chat", chat("你好世界。" * 1000)) is None
    assert check_request_inline(PII, "chat", chat("a" * (INLINE_CHARS + 1))) is None
    assert check_answer_inline(PII, "chat", {"choices": [{"text": "你好" * 2000}]}) is None


def test_past_the_match_cap_a_request_is_blocked_naming_the_rule():
    """Two million addresses: refused after MAX_MATCHES of them, in a bounded time."""
    body = chat("a@b.co " * 2_000_000)
    started = time.perf_counter()
    decision = check_request(PII, "chat", body)
    assert time.perf_counter() - started < 5
    assert isinstance(decision, Blocked)
    assert decision.reason is BlockReason.TOO_MANY_MATCHES and decision.rule == "email"
    assert GuardrailHit("email", GuardAction.BLOCK, Where.INPUT) in decision.hits


def test_up_to_the_cap_every_match_is_redacted():
    """Matches spread over several texts count together, and below the cap all redact."""
    per_text = MAX_MATCHES // 4
    body = chat(*["10.0.0.1 " * per_text] * 3)
    decision = check_request(PII, "chat", body)
    assert isinstance(decision, Passed)
    assert all(
        m["content"] == "[REDACTED:ip_address] " * per_text for m in decision.body["messages"]
    )
    over = check_request(PII, "chat", chat(*["10.0.0.1 " * per_text] * 5))
    assert isinstance(over, Blocked) and over.reason is BlockReason.TOO_MANY_MATCHES


def test_a_dense_answer_is_blocked_as_an_answer():
    payload = {"choices": [{"message": {"content": "10.0.0.1 " * (MAX_MATCHES + 1)}}]}
    decision = check_answer(PII, "chat", payload)
    assert isinstance(decision, Blocked) and decision.where is Where.OUTPUT
    assert decision.reason is BlockReason.TOO_MANY_MATCHES


def test_the_refusal_names_the_rule_and_the_cap_never_the_text():
    """400 content_policy_violation, as any guardrail block, saying what to change."""
    error = refusal(Blocked("ip_address", Where.INPUT, (), BlockReason.TOO_MANY_MATCHES))
    assert isinstance(error, ContentPolicyViolation)
    assert (error.status, error.code) == (400, "content_policy_violation")
    assert "'ip_address'" in error.message and f"more than {MAX_MATCHES}" in error.message
    answer = refusal(Blocked("email", Where.OUTPUT, (), BlockReason.TOO_MANY_MATCHES))
    assert answer.message.startswith("The answer was blocked")


def test_a_match_budget_counts_check_rejected_matches_too():
    """`v1.2.3.4`-like candidates cost a check each even when they are no finding."""
    budget = MatchBudget(3)
    try:
        PII.find("version 1.2.3.4 " * 10, 0, budget)
    except OutOfMatches as out:
        assert out.rule.name == "ip_address"
    else:
        raise AssertionError("the budget did not run out")
