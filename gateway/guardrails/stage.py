"""The guard stages as the pipeline calls them: input (before any reservation) and
a whole answer's output. Each returns a typed `Decision`; `refusal` turns a
`Blocked` into the error the pipeline raises.

An upstream's own refusal (a relayed 4xx) is output too: `guard_upstream_error` runs
the output rules on its message, which may quote the prompt back.

Input runs, in order: the token limit, the one combined scan (which may redact),
then each classifier rule on the (redacted) text. Only the classifier does I/O.
A scan too large for the event loop (check.py's inline budget) runs on a thread, as
does every review of token ids (token_ids.py), which count toward the token limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
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
from gateway.guardrails.refusals import refusal, unreadable_token_ids, withheld_message
from gateway.guardrails.texts import rewrite_request
from gateway.guardrails.token_ids import Unreadable, id_count, review_ids, token_arrays
from gateway.limits.token_count import count_prompt


def request_texts(endpoint: str, body: Mapping[str, Any]) -> list[str]:
    texts: list[str] = []

    def collect(text: str) -> tuple[()]:
        texts.append(text)
        return ()

    rewrite_request(endpoint, body, collect)
    return texts


def exceeds_tokens(endpoint: str, body: Mapping[str, Any], model: str, limit: int) -> bool:
    """More than `limit` tokens of text and token ids? A token is at least one byte (or
    one id), so a request with fewer is never counted (the common case)."""
    size = sum(len(t.encode()) for t in request_texts(endpoint, body))
    if size + id_count(token_arrays(endpoint, body)) <= limit:
        return False
    return count_prompt(endpoint, body, model) > limit


def may_exceed_tokens(
    endpoint: str, body: Mapping[str, Any], limit: int, chars: int | None = None
) -> bool:
    """Could the request hold more than `limit` tokens? No when 4 bytes per character
    (UTF-8's most) and one per id come to at most `limit`: nothing encoded or counted.
    `chars`: its texts' characters, at least, if known (the inline scan counted them)."""
    if chars is None:
        chars = sum(len(t) for t in request_texts(endpoint, body))
    return 4 * chars + id_count(token_arrays(endpoint, body)) > limit


async def _over_token_limit(
    endpoint: str, body: Mapping[str, Any], model: str, limit: int, *, chars: int | None
) -> bool:
    """The input token limit. A body whose characters the inline scan counted (its whole
    walk fit the scan's budget: `chars`) and that are few enough is cleared on the event
    loop: the usual request, without a thread's hop (~20 µs of CPU). Anything else is
    measured on a thread: counting a huge prompt takes milliseconds."""
    if chars is not None and not may_exceed_tokens(endpoint, body, limit, chars):
        return False
    return await asyncio.to_thread(exceeds_tokens, endpoint, body, model, limit)


async def guard_input(
    guards: Guards,
    endpoint: str,
    body: Mapping[str, Any],
    model: str,
    classifiers: Classifiers,
) -> Decision:
    """Raises InvalidValue for token ids the guardrails cannot read (token_ids.py)."""
    if not guards.checks_input:
        return Passed(body)
    limit = guards.max_input_tokens
    decision = check_request_inline(guards.input, endpoint, body)  # None: not on the loop
    # Counted: the inline scan walked the whole body within its budget (not a scanner with
    # no rules, which walks nothing, nor one that stopped scanning at a block).
    chars = decision.text_chars if isinstance(decision, Passed) else None
    if limit is not None and await _over_token_limit(endpoint, body, model, limit, chars=chars):
        hit = GuardrailHit(TOKEN_LIMIT_RULE.name, GuardAction.BLOCK, Where.INPUT)
        return Blocked(TOKEN_LIMIT_RULE.name, Where.INPUT, (hit,))  # ahead of any scan's
    if decision is None:  # dense or long: a thread, so the event loop keeps serving
        decision = await asyncio.to_thread(check_request, guards.input, endpoint, body)
    if isinstance(decision, Blocked):
        return decision
    arrays = token_arrays(endpoint, body)
    if not arrays and not guards.classifiers:
        return decision  # text alone, no classifier: the scan has said it all
    hits = list(decision.hits)
    id_texts: tuple[str, ...] = ()
    if arrays and (not guards.input.is_empty or guards.classifiers):
        ids = await asyncio.to_thread(review_ids, guards.input, arrays)  # loads encodings
        if isinstance(ids, Unreadable):
            raise unreadable_token_ids(ids.param)
        if ids.blocked is not None:
            return replace(ids.blocked, hits=(*hits, *ids.blocked.hits))
        hits, id_texts = hits + list(ids.hits), ids.texts
    if not guards.classifiers:
        return Passed(decision.body, tuple(hits))
    text = "\n".join([*request_texts(endpoint, decision.body), *id_texts])
    return await _classify(guards, classifiers, text, decision.body, hits)


async def _classify(
    guards: Guards,
    classifiers: Classifiers,
    text: str,
    body: Mapping[str, Any],
    hits: list[GuardrailHit],
) -> Decision:
    """Each classifier rule on the request's text (after the scan, redacted)."""
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
    return Passed(body, tuple(hits))


async def guard_output(
    guards: Guards, endpoint: str, payload: Mapping[str, Any], *, is_json: bool = False
) -> Decision:
    """A whole answer: Passed with the payload (the same object when unchanged).
    `is_json`: the request asked for JSON text (texts.asks_for_json)."""
    if not guards.checks_output:
        return Passed(payload)
    decision = check_answer_inline(guards.output, endpoint, payload, is_json=is_json)
    if decision is None:
        check = partial(check_answer, is_json=is_json)
        decision = await asyncio.to_thread(check, guards.output, endpoint, payload)
    return decision


@dataclass(frozen=True, slots=True)
class GuardedMessage:
    """An upstream error as the client may see it (its message, type, param and code),
    and the rules that fired."""

    message: str
    hits: tuple[GuardrailHit, ...] = ()
    type: str | None = None
    param: str | None = None
    code: str | None = None


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def relayed_message(error: Mapping[str, Any], decision: Decision) -> GuardedMessage:
    """What a relayed error says after the output rules: its fields as they left them
    (redacted), or, when a rule blocks it, a message that names the rule and never the
    text (guard_upstream_error then keeps the identifiers no rule touches)."""
    if isinstance(decision, Blocked):
        return GuardedMessage(withheld_message(decision.rule), decision.hits)
    said = decision.body["error"] if decision.hits else error
    return GuardedMessage(
        said["message"],
        decision.hits,
        _text_or_none(said.get("type")),
        _text_or_none(said.get("param")),
        _text_or_none(said.get("code")),
    )


async def guard_upstream_error(
    guards: Guards,
    endpoint: str,
    message: str,
    *,
    type_: str | None = None,
    param: str | None = None,
    code: str | None = None,
) -> GuardedMessage:
    """An upstream's 4xx for the request, relayed: its fields under the output rules.
    A team without output rules pays one attribute read."""
    error = {"message": message, "type": type_, "param": param, "code": code}
    if not guards.checks_output:
        return GuardedMessage(message, (), type_, param, code)
    decision = await guard_output(guards, endpoint, {"error": error})
    said = relayed_message(error, decision)
    if not isinstance(decision, Blocked):
        return said
    # Blocked: the client still learns what kind of refusal it was (a context_length_exceeded
    # its SDK acts on), from each identifier that no rule would change on its own.
    kept = [await _untouched(guards, endpoint, value) for value in (type_, param, code)]
    return replace(said, type=kept[0], param=kept[1], code=kept[2])


async def _untouched(guards: Guards, endpoint: str, value: str | None) -> str | None:
    if value is None:
        return None
    alone = await guard_output(guards, endpoint, {"error": {"message": value}})
    return value if isinstance(alone, Passed) and not alone.hits else None


__all__ = ["guard_input", "guard_output", "guard_upstream_error", "refusal"]
