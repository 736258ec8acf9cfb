"""The guard stages as the pipeline calls them: input (before any reservation) and
a whole answer's output. Each returns a typed `Decision`; `refusal` turns a
`Blocked` into the error the pipeline raises.

Input runs, in order: the token limit, the one combined scan (which may redact),
then each classifier rule on the (redacted) text. Only the classifier does I/O.
A scan too large for the event loop (check.py's inline budget) runs on a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from gateway.guardrails.check import (
    check_answer,
    check_answer_inline,
    check_request,
    check_request_inline,
)
from gateway.guardrails.classifier import Classifiers, Verdict, classifier_decision
from gateway.guardrails.decision import (
    Blocked,
    BlockReason,
    Decision,
    GuardrailHit,
    Passed,
)
from gateway.guardrails.guards import TOKEN_LIMIT_RULE, Guards
from gateway.guardrails.kinds import GuardAction, Where
from gateway.guardrails.refusals import refusal
from gateway.guardrails.texts import rewrite_request
from gateway.limits.token_count import count_prompt


def request_texts(endpoint: str, body: Mapping[str, Any]) -> list[str]:
    texts: list[str] = []

    def collect(text: str) -> str:
        texts.append(text)
        return text

    rewrite_request(endpoint, body, collect)
    return texts


def exceeds_tokens(endpoint: str, body: Mapping[str, Any], model: str, limit: int) -> bool:
    """More than `limit` tokens of text? A token is at least one byte, so a request
    with fewer bytes of text is never counted (the common case)."""
    if sum(len(t.encode()) for t in request_texts(endpoint, body)) <= limit:
        return False
    return count_prompt(endpoint, body, model) > limit


async def guard_input(
    guards: Guards,
    endpoint: str,
    body: Mapping[str, Any],
    model: str,
    classifiers: Classifiers,
) -> Decision:
    if not guards.checks_input:
        return Passed(body)
    limit = guards.max_input_tokens
    # Counting a huge prompt takes milliseconds: off the event loop.
    if limit is not None and await asyncio.to_thread(exceeds_tokens, endpoint, body, model, limit):
        hit = GuardrailHit(TOKEN_LIMIT_RULE.name, GuardAction.BLOCK, Where.INPUT)
        return Blocked(TOKEN_LIMIT_RULE.name, Where.INPUT, (hit,))
    decision = check_request_inline(guards.input, endpoint, body)
    if decision is None:  # dense or long: a thread, so the event loop keeps serving
        decision = await asyncio.to_thread(check_request, guards.input, endpoint, body)
    if isinstance(decision, Blocked) or not guards.classifiers:
        return decision
    hits = list(decision.hits)
    text = "\n".join(request_texts(endpoint, decision.body))
    answers = await asyncio.gather(*(classifiers.score(rule, text) for rule in guards.classifiers))
    for rule, answer in zip(guards.classifiers, answers, strict=True):
        verdict = classifier_decision(rule, answer)
        name = rule.rule.name
        if verdict is Verdict.PASS:
            continue
        if verdict is Verdict.UNCHECKED_CLOSED:
            hits.append(GuardrailHit(name, GuardAction.BLOCK, Where.INPUT))
            why = getattr(answer, "why", "no answer")
            return Blocked(name, Where.INPUT, tuple(hits), BlockReason.UNAVAILABLE, why)
        if verdict is Verdict.UNCHECKED_OPEN:
            hits.append(GuardrailHit(name, GuardAction.FLAG, Where.INPUT))
            continue
        hits.append(GuardrailHit(name, rule.rule.action, Where.INPUT))
        if rule.rule.action is GuardAction.BLOCK:
            return Blocked(name, Where.INPUT, tuple(hits))
    return Passed(decision.body, tuple(hits))


async def guard_output(guards: Guards, endpoint: str, payload: Mapping[str, Any]) -> Decision:
    """A whole answer: Passed with the payload (the same object when unchanged)."""
    if not guards.checks_output:
        return Passed(payload)
    decision = check_answer_inline(guards.output, endpoint, payload)
    if decision is None:
        decision = await asyncio.to_thread(check_answer, guards.output, endpoint, payload)
    return decision


__all__ = ["guard_input", "guard_output", "refusal"]
