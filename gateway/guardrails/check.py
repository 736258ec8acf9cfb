"""The pure decisions: a request body or a whole answer, against a team's guards.

`check_request` and `check_answer` scan every text (texts.py) with the side's
one combined scan and return `Passed` (the body, redacted where a rule said so)
or `Blocked` (naming the rule). Hits are every rule that fired, never the text.

Clean text costs nanoseconds a character, but each match microseconds (its check,
its finding, its redaction): 13 MB of `10.0.0.1 ` took 10 s. So a request or answer
may make at most MAX_MATCHES matches (past them it is blocked, TOO_MANY_MATCHES),
and the `_inline` variants give up (None) past what the event loop may spend, for
the caller to run the whole check on a thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from gateway.guardrails.decision import (
    Blocked,
    BlockReason,
    Decision,
    GuardrailHit,
    HitLog,
    Passed,
    review,
)
from gateway.guardrails.json_texts import NameNotRedactable, TooDeepToRedact
from gateway.guardrails.kinds import GuardAction, Where
from gateway.guardrails.scanner import MatchBudget, OutOfMatches, Redaction, Rule, Scanner
from gateway.guardrails.texts import TextFn, rewrite_answer, rewrite_request
from gateway.guardrails.walk_cost import TEXT_COST

# Matches one request (or one whole answer) may make: ~0.7 s of CPU at most, on a
# thread. Past it the request is refused rather than redacted (README: guardrails).
MAX_MATCHES = 100_000
# What the event loop scans itself (~0.5 ms at most); past either, the check moves to
# a thread. Characters of ASCII text (~2 ns each); a text with any other character
# weighs NON_ASCII_WEIGHT a character (folding CJK costs ~0.6 µs a character); each
# text reviewed, list walked and JSON text read weighs what walk_cost.py says.
INLINE_CHARS = 256 * 1024
NON_ASCII_WEIGHT = 256
INLINE_MATCHES = 64

Rewrite = Callable[[str, Mapping[str, Any], TextFn], Mapping[str, Any]]


def inline_weight(text: str | bytes) -> int:
    """What scanning `text` costs against INLINE_CHARS: its length, NON_ASCII_WEIGHT
    times over when it holds anything but ASCII."""
    return len(text) if text.isascii() else len(text) * NON_ASCII_WEIGHT


class _TooMuchInline(Exception):
    """The inline check passed INLINE_CHARS: the caller scans on a thread instead."""


class _Reviewer:
    """The function texts.py calls on each text: reviews it, remembers the first block."""

    __slots__ = (
        *("blocked_by", "budget", "chars_left", "log", "redacted_by", "scanner", "where"),
        "text_chars",
    )

    def __init__(
        self, scanner: Scanner, where: Where, budget: MatchBudget, chars: int | None
    ) -> None:
        self.scanner, self.where, self.log = scanner, where, HitLog()
        self.budget, self.chars_left = budget, chars
        self.blocked_by: Rule | None = None
        self.redacted_by: Rule | None = None  # the rule that rewrote the last text
        self.text_chars = 0  # of every text reviewed (a token limit's first look)

    def __call__(self, text: str) -> Sequence[Redaction]:
        if self.blocked_by is not None:
            return ()  # decided: the rest is not scanned
        self.text_chars += len(text)
        if self.chars_left is not None:
            self.chars_left -= inline_weight(text) + TEXT_COST
            if self.chars_left < 0:
                raise _TooMuchInline
        if self.scanner.is_clean(text, self.budget):
            return ()  # the usual text: nothing found, nothing made
        result = review(self.scanner, text, self.budget)
        self.log.add(result.fired, self.where)
        self.blocked_by = result.blocked_by
        if result.redactions:
            self.redacted_by = next(r for r in result.fired if r.action is GuardAction.REDACT)
        return result.redactions

    def lines_clean(self, texts: list[str]) -> bool:
        """Whether none of `texts` holds a match, each scanned alone (json_texts.py clears
        a schema's property names so); False: review each."""
        if self.blocked_by is not None:
            return True  # decided: the rest is not scanned
        self.text_chars += sum(len(text) for text in texts)
        if self.chars_left is not None:
            self.chars_left -= sum(inline_weight(text) for text in texts) + TEXT_COST
            if self.chars_left < 0:
                raise _TooMuchInline
        return self.scanner.lines_clean(texts)

    def spend(self, weight: int) -> None:
        """The walkers' own work (walk_cost.py): past the inline budget, a thread's turn."""
        if self.chars_left is not None:
            self.chars_left -= weight
            if self.chars_left < 0:
                raise _TooMuchInline


def _check(
    scanner: Scanner, where: Where, rewrite: Rewrite, endpoint: str, body: Mapping[str, Any]
) -> Decision:
    if scanner.is_empty:
        return Passed(body)
    reviewer = _Reviewer(scanner, where, MatchBudget(MAX_MATCHES), None)
    try:
        checked = rewrite(endpoint, body, reviewer)
    except OutOfMatches as out:
        hit = GuardrailHit(out.rule.name, GuardAction.BLOCK, where)
        hits = (*reviewer.log.hits, hit)
        return Blocked(out.rule.name, where, hits, BlockReason.TOO_MANY_MATCHES)
    except TooDeepToRedact:
        return _too_deep(reviewer)
    except NameNotRedactable:
        return _name_refused(reviewer)
    return _decide(reviewer, checked)


def _check_inline(
    scanner: Scanner, where: Where, rewrite: Rewrite, endpoint: str, body: Mapping[str, Any]
) -> Decision | None:
    if scanner.is_empty:
        return Passed(body)
    reviewer = _Reviewer(scanner, where, MatchBudget(INLINE_MATCHES), INLINE_CHARS)
    try:
        checked = rewrite(endpoint, body, reviewer)
    except (OutOfMatches, _TooMuchInline):
        return None
    except TooDeepToRedact:
        return _too_deep(reviewer)
    except NameNotRedactable:
        return _name_refused(reviewer)
    return _decide(reviewer, checked)


def _name_refused(reviewer: _Reviewer) -> Blocked:
    """A redact rule matched a name (json_texts.py): refused, since renaming breaks it."""
    assert reviewer.redacted_by is not None  # check_name raises only after a redaction
    rule = reviewer.redacted_by.name
    hits = (*reviewer.log.hits, GuardrailHit(rule, GuardAction.BLOCK, reviewer.where))
    return Blocked(rule, reviewer.where, hits, BlockReason.NAME_NOT_REDACTABLE)


def _too_deep(reviewer: _Reviewer) -> Blocked:
    """A redact rule matched a text nested too deep to write back (json_texts.py): the
    answer is refused as that rule's block would refuse it."""
    assert reviewer.redacted_by is not None  # raised only after a redaction
    rule = reviewer.redacted_by.name
    hits = (*reviewer.log.hits, GuardrailHit(rule, GuardAction.BLOCK, reviewer.where))
    return Blocked(rule, reviewer.where, hits)


def _decide(reviewer: _Reviewer, body: Any) -> Decision:
    hits = tuple(reviewer.log.hits)
    if reviewer.blocked_by is not None:
        return Blocked(reviewer.blocked_by.name, reviewer.where, hits)
    return Passed(body, hits, reviewer.text_chars)


def check_request(scanner: Scanner, endpoint: str, body: Mapping[str, Any]) -> Decision:
    """The whole check, however large the request (a large one: call on a thread)."""
    return _check(scanner, Where.INPUT, rewrite_request, endpoint, body)


def check_request_inline(
    scanner: Scanner, endpoint: str, body: Mapping[str, Any]
) -> Decision | None:
    """check_request when it is cheap enough for the event loop; else None (having
    spent at most the inline budget): run check_request on a thread."""
    return _check_inline(scanner, Where.INPUT, rewrite_request, endpoint, body)


def check_answer(
    scanner: Scanner, endpoint: str, payload: Mapping[str, Any], *, is_json: bool = False
) -> Decision:
    """`is_json`: the request asked for JSON text (texts.rewrite_answer)."""
    return _check(scanner, Where.OUTPUT, _answer_rewrite(is_json), endpoint, payload)


def check_answer_inline(
    scanner: Scanner, endpoint: str, payload: Mapping[str, Any], *, is_json: bool = False
) -> Decision | None:
    return _check_inline(scanner, Where.OUTPUT, _answer_rewrite(is_json), endpoint, payload)


def _answer_rewrite(is_json: bool) -> Rewrite:
    return partial(rewrite_answer, is_json=True) if is_json else rewrite_answer
