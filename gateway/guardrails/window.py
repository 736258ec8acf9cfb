"""The hold-back window: how much of a growing text may be released, redacted.

A stream's text arrives in pieces; a match may straddle two of them. `advance`
scans the unreleased text and releases all but the last `window + 1` characters
(the longest match a rule can make, and one more for a trailing `\\b`): a match
that starts in the released part is then wholly in view, so it is redacted (or
blocks) before any of it leaves. `final=True` releases everything. A few released
characters are kept as left context so a word boundary at the seam reads right.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.guardrails.kinds import GuardAction
from gateway.guardrails.scanner import Finding, Rule, Scanner, redact

CONTEXT_CHARS = 8


@dataclass(frozen=True, slots=True)
class Advance:
    release: str  # text to send now (redacted)
    keep: str  # text to hold back (unscanned for release yet)
    context: str  # the last released characters, for the next round
    fired: tuple[Rule, ...] = ()
    blocked_by: Rule | None = None


def advance(scanner: Scanner, context: str, pending: str, *, final: bool) -> Advance:
    text = context + pending
    findings = [f for f in scanner.find(text) if f.start >= len(context)]
    cut = len(text) if final else max(len(context), len(text) - scanner.window_chars - 1)
    applied: list[Finding] = []
    for finding in findings:  # ordered by start; one that starts inside a redaction joins it
        if finding.start >= cut:
            break
        applied.append(finding)
        cut = max(cut, finding.end)
    fired = tuple(dict.fromkeys(f.rule for f in applied))
    blocking = next((r for r in fired if r.action is GuardAction.BLOCK), None)
    if blocking is not None:
        return Advance("", "", context, fired, blocking)
    released = redact(text[:cut], applied)[len(context) :] if applied else text[len(context) : cut]
    new_context = (context + released)[-CONTEXT_CHARS:]
    return Advance(released, text[cut:], new_context, fired)
