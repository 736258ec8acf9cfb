"""The input token limit (`max_input_tokens`): which requests it blocks, and that the usual
request is cleared on the event loop (stage.py `may_exceed_tokens`), not counted on a
thread."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.guardrails import stage
from gateway.guardrails.classifier import Classifiers
from gateway.guardrails.decision import Blocked, Passed
from gateway.guardrails.guards import Guards
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.stage import exceeds_tokens, guard_input, may_exceed_tokens

SECRETS = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK))])
NONE = Scanner([])
LIMIT = 2_000
KEY = "AKIAZ7Q2W9X4C6V8B1N3"


def guards(scanner: Scanner, limit: int | None = LIMIT) -> Guards:
    return Guards(("p",), scanner, NONE, limit)


def chat(*texts: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": t} for t in texts]}


def run(g: Guards, body: dict[str, Any]) -> Any:
    return asyncio.run(guard_input(g, "chat", body, "gpt-4o-mini", Classifiers()))


texts = st.lists(st.text(max_size=400), min_size=1, max_size=6)
ids = st.lists(st.integers(min_value=0, max_value=100_000), max_size=300)


@given(texts, st.integers(min_value=0, max_value=3_000))
def test_what_the_loop_clears_the_count_never_blocks(parts: list[str], limit: int) -> None:
    """A sound pre-filter: a request it clears is one the full check clears too."""
    body = chat(*parts)
    if not may_exceed_tokens("chat", body, limit):
        assert not exceeds_tokens("chat", body, "gpt-4o-mini", limit)


WORDS = st.text(alphabet="ab é\n", max_size=12)
JSON = st.recursive(
    st.none() | st.integers() | WORDS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(WORDS, inner, max_size=3),
    max_leaves=8,
)
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.just("user")},
        optional={
            "content": WORDS
            | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": WORDS})),
            "name": WORDS,
            "thinking": JSON,
        },
    ),
    max_size=4,
)
TOOLS = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.just("function"),
            "function": st.fixed_dictionaries({"name": WORDS, "parameters": JSON}),
        }
    ),
    max_size=2,
)


@given(
    st.fixed_dictionaries(
        {"messages": MESSAGES},
        optional={"tools": TOOLS, "stop": WORDS, "extra_body": JSON, "user": WORDS},
    )
)
def test_the_inline_scan_counts_every_character_the_limit_reads(body: dict[str, Any]) -> None:
    """The count guard_input clears a request by (stage.py: the inline scan's, so the body
    is not walked again) is never below the characters of the texts the limit counts:
    repeated texts and a schema's names cleared together included."""
    from gateway.guardrails.check import check_request_inline

    decision = check_request_inline(SECRETS, "chat", body)
    if isinstance(decision, Passed):
        assert decision.text_chars is not None
        assert decision.text_chars >= sum(len(t) for t in stage.request_texts("chat", body))


def test_a_schemas_names_cleared_together_are_counted() -> None:
    from gateway.guardrails.check import check_request_inline

    schema = {"type": "object", "properties": {"alpha": {"type": "string"}, "beta": {}}}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
    decision = check_request_inline(SECRETS, "chat", body)
    assert isinstance(decision, Passed) and decision.text_chars is not None
    assert decision.text_chars >= len("hifalphabeta")


def test_no_rules_count_nothing_so_the_limit_counts_on_a_thread() -> None:
    from gateway.guardrails.check import check_request_inline

    decision = check_request_inline(NONE, "chat", chat("hello"))
    assert isinstance(decision, Passed) and decision.text_chars is None


@given(st.lists(ids, min_size=1, max_size=3), st.integers(min_value=0, max_value=1_000))
def test_token_ids_count_in_the_pre_filter_too(arrays: list[list[int]], limit: int) -> None:
    body = {"model": "m", "prompt": arrays}
    if not may_exceed_tokens("completions", body, limit):
        assert not exceeds_tokens("completions", body, "gpt-4o-mini", limit)


def test_a_short_prompt_is_cleared_without_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_thread(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("counted on a thread")

    monkeypatch.setattr(stage.asyncio, "to_thread", no_thread)
    decision = run(guards(SECRETS), chat("hello there"))
    assert isinstance(decision, Passed) and not decision.hits


@pytest.mark.parametrize("scanner", [SECRETS, NONE], ids=["with rules", "no rules"])
def test_a_prompt_over_the_limit_is_blocked_naming_the_limit(scanner: Scanner) -> None:
    decision = run(guards(scanner), chat("word " * (LIMIT + 100)))
    assert isinstance(decision, Blocked) and decision.rule == "max_input_tokens"


def test_the_limit_is_named_ahead_of_a_rule_that_blocks_too() -> None:
    decision = run(guards(SECRETS), chat(f"key {KEY}", "word " * (LIMIT + 100)))
    assert isinstance(decision, Blocked) and decision.rule == "max_input_tokens"


def test_many_characters_under_the_limit_in_tokens_pass() -> None:
    """4 bytes a character is a bound, not the count: 1,000 words of 5 characters are past
    what the loop clears (5,000 characters) but ~1,000 tokens, under 2,000."""
    body = chat("word " * 1_000)
    assert may_exceed_tokens("chat", body, LIMIT)
    decision = run(guards(SECRETS), body)
    assert isinstance(decision, Passed)


def test_a_blocked_request_within_the_limit_is_blocked_by_its_rule() -> None:
    decision = run(guards(SECRETS), chat(f"key {KEY}"))
    assert isinstance(decision, Blocked) and decision.rule == "secrets"
