"""The pure decisions: a request body or a whole answer, against a team's guards.

`check_request` and `check_answer` scan every text (texts.py) with the side's
one combined scan and return `Passed` (the body, redacted where a rule said so)
or `Blocked` (naming the rule). Hits are every rule that fired, never the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.guardrails.decision import Blocked, Decision, HitLog, Passed, review
from gateway.guardrails.kinds import Where
from gateway.guardrails.scanner import Rule, Scanner
from gateway.guardrails.texts import rewrite_answer, rewrite_request


class _Reviewer:
    """The function texts.py calls on each text: reviews it, remembers the first block."""

    __slots__ = ("blocked_by", "log", "scanner", "where")

    def __init__(self, scanner: Scanner, where: Where, log: HitLog) -> None:
        self.scanner, self.where, self.log = scanner, where, log
        self.blocked_by: Rule | None = None

    def __call__(self, text: str) -> str:
        if self.blocked_by is not None:
            return text  # decided: the rest is not scanned
        result = review(self.scanner, text)
        self.log.add(result.fired, self.where)
        self.blocked_by = result.blocked_by
        return result.text


def _decide(reviewer: _Reviewer, body: Any) -> Decision:
    hits = tuple(reviewer.log.hits)
    if reviewer.blocked_by is not None:
        return Blocked(reviewer.blocked_by.name, reviewer.where, hits)
    return Passed(body, hits)


def check_request(scanner: Scanner, endpoint: str, body: Mapping[str, Any]) -> Decision:
    if scanner.is_empty:
        return Passed(body)
    reviewer = _Reviewer(scanner, Where.INPUT, HitLog())
    return _decide(reviewer, rewrite_request(endpoint, body, reviewer))


def check_answer(scanner: Scanner, endpoint: str, payload: Mapping[str, Any]) -> Decision:
    if scanner.is_empty:
        return Passed(payload)
    reviewer = _Reviewer(scanner, Where.OUTPUT, HitLog())
    return _decide(reviewer, rewrite_answer(endpoint, payload, reviewer))
