"""Typed decisions: what the guardrails decided about a text, a body, an answer.

A block is a value (`Blocked`), never an exception: whoever holds it must look at
it, and the pipeline alone turns it into the 400. A hit names the rule, its
action and where it looked, never the text that matched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gateway.guardrails.kinds import GuardAction, Where
from gateway.guardrails.scanner import (
    MatchBudget,
    Redaction,
    Rule,
    Scanner,
    apply_redactions,
    redactions,
)


@dataclass(frozen=True, slots=True)
class GuardrailHit:
    """A rule that fired on a request: for the ledger, the logs and the trace."""

    rule: str
    action: GuardAction
    where: Where


@dataclass(frozen=True, slots=True)
class TextReview:
    text: str  # redacted (the same object when nothing changed)
    fired: tuple[Rule, ...]  # each rule once, in the order of their first finding
    blocked_by: Rule | None
    redactions: tuple[Redaction, ...] = ()  # what `text` replaced, in the text reviewed


CLEAN = TextReview("", (), None)


def review(scanner: Scanner, text: str, budget: MatchBudget | None = None) -> TextReview:
    """Raises OutOfMatches when `budget` runs out (scanner.py)."""
    findings = scanner.find(text, 0, budget)
    if not findings:
        return TextReview(text, (), None)
    fired = tuple(dict.fromkeys(f.rule for f in findings))
    blocking = next((r for r in fired if r.action is GuardAction.BLOCK), None)
    if blocking is not None:
        return TextReview(text, fired, blocking)
    spans = tuple(redactions(findings))
    return TextReview(apply_redactions(text, spans), fired, None, spans)


@dataclass(frozen=True, slots=True)
class Passed:
    """Go on with this body (redacted where a rule said so)."""

    body: Any
    hits: tuple[GuardrailHit, ...] = ()
    # The characters of every text the check read, at least (None: not counted), for the
    # token limit's first look (stage.py): a request this short needs no count.
    text_chars: int | None = None


class BlockReason(StrEnum):
    MATCHED = "matched"  # a rule found what it looks for
    UNAVAILABLE = "unavailable"  # a fail-closed classifier could not answer
    TOO_MANY_MATCHES = "too_many_matches"  # more matches than one request may cost
    # a redact rule fired in a prompt sent as token ids, which the gateway cannot rewrite
    TOKEN_IDS_NOT_REDACTABLE = "token_ids_not_redactable"
    # a redact rule matched a name (a tool's, a property's): renaming it breaks the request
    NAME_NOT_REDACTABLE = "name_not_redactable"


@dataclass(frozen=True, slots=True)
class Blocked:
    """Refuse: `rule` blocked it. `hits` holds every rule that fired before."""

    rule: str
    where: Where
    hits: tuple[GuardrailHit, ...] = ()
    reason: BlockReason = BlockReason.MATCHED
    why: str = ""  # for UNAVAILABLE: what went wrong (no text of the request)
    param: str | None = None  # the request field it is about, when one is (token ids)


Decision = Passed | Blocked


class HitLog:
    """Collects hits once per (rule, action, where), in order."""

    __slots__ = ("_seen", "hits")

    def __init__(self) -> None:
        self.hits: list[GuardrailHit] = []
        self._seen: set[GuardrailHit] = set()

    def add(self, rules: Iterable[Rule], where: Where) -> None:
        for rule in rules:
            hit = GuardrailHit(rule.name, rule.action, where)
            if hit not in self._seen:
                self._seen.add(hit)
                self.hits.append(hit)
