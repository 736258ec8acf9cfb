"""The hold-back window: how much of a growing text may be released, redacted.

A stream's text arrives in pieces; a match may straddle two of them. `advance`
scans the unreleased text and holds back only from the earliest position where a
match could still be in progress (a trailing `sk-ab`, `-----BEGIN`, a run of
digits: `Scanner.in_progress_from`), and never more than the longest match a rule
can make (plus one character for a trailing `\\b`). Ordinary prose flows with at
most its last word held. A match that starts in the released part is then wholly
in view, so it is redacted (or blocks) before any of it leaves; one that ends so
near the end that its check has not seen its right-hand context
(`LOOKAHEAD_CHARS`) is held whole, and so is one inside which another possible
match began. A blocking match blocks as soon as it is whole. `final=True`
releases everything. A few released characters (as they came, unredacted, never
sent again) are kept as left context so a word boundary or a check's look-behind
at the seam reads right. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.guardrails.kinds import GuardAction
from gateway.guardrails.scanner import (
    Finding,
    MatchBudget,
    Redaction,
    Rule,
    Scanner,
    apply_redactions,
    redactions,
)

CONTEXT_CHARS = 9  # the longest look-behind of a check (detectors.py: "version ")
LOOKAHEAD_CHARS = 2  # the longest look-ahead of a check (a card's trailing digit group)


class Advance:
    """One step of the window; never changed once made. A plain class: a stream makes
    one per event, and a NamedTuple's or a frozen dataclass's constructor costs three to
    four times as much."""

    __slots__ = ("blocked_by", "context", "fired", "keep", "redactions", "release")

    def __init__(
        self,
        release: str,  # text to send now (redacted)
        keep: str,  # text to hold back (unscanned for release yet)
        context: str,  # the last released characters as they came (unredacted), for next round
        fired: tuple[Rule, ...] = (),
        blocked_by: Rule | None = None,
        redactions: Sequence[Redaction] = (),  # what `release` replaced, in `pending`
    ) -> None:
        self.release = release
        self.keep = keep
        self.context = context
        self.fired = fired
        self.blocked_by = blocked_by
        self.redactions = redactions


@dataclass(slots=True)
class _Cluster:
    """Findings whose spans overlap: they are released (merged) together or held together."""

    findings: list[Finding]
    begin: int
    start: int
    end: int


def _clusters(findings: list[Finding]) -> list[_Cluster]:
    out: list[_Cluster] = []
    for finding in findings:  # ordered by start
        if out and finding.start < out[-1].end:
            last = out[-1]
            last.findings.append(finding)
            last.begin, last.end = min(last.begin, finding.begin), max(last.end, finding.end)
        else:
            out.append(_Cluster([finding], finding.begin, finding.start, finding.end))
    return out


def advance_clean(scanner: Scanner, context: str, pending: str) -> tuple[str, str, str] | None:
    """`advance(scanner, context, pending, final=False)` as (release, keep, context) when the
    text is ASCII and holds no match (a stream's prose, once per event: no `Advance` made,
    no findings listed); None when `advance` must decide."""
    text = context + pending
    hold = scanner.clean_hold(text, len(context))
    if hold < 0:
        return None
    cut = len(text) - scanner.window_chars - 1
    if hold > cut:  # (the hold is never before the seam)
        cut = hold
    return text[len(context) : cut], text[cut:], text[max(0, cut - CONTEXT_CHARS) : cut]


def advance(
    scanner: Scanner,
    context: str,
    pending: str,
    *,
    final: bool,
    budget: MatchBudget | None = None,
) -> Advance:
    """Raises OutOfMatches when `budget` runs out (scanner.py), having changed nothing."""
    text = context + pending
    seam = len(context)
    found, hold, window = scanner.scan_stream(text, seam, final=final, budget=budget)
    findings = [f for f in found if f.start >= seam] if found else found
    if not findings:  # the common case: release up to where a match could be in progress
        cut = hold if final else max(seam, window, hold)
        return Advance(text[seam:cut], text[cut:], text[max(0, cut - CONTEXT_CHARS) : cut])

    def settled(end: int) -> bool:  # a check has seen what follows the match
        return final or end + LOOKAHEAD_CHARS <= len(text)

    # A block needs no window: once a blocking match is whole, nothing more goes out.
    blocking = next(
        (f.rule for f in findings if f.rule.action is GuardAction.BLOCK and settled(f.end)), None
    )
    if blocking is not None:
        fired = tuple(dict.fromkeys(f.rule for f in findings if settled(f.end)))
        return Advance("", "", context, fired, blocking)
    cut = hold if final else max(len(context), window, hold)
    taken: list[_Cluster] = []
    for cluster in _clusters(findings):
        if cluster.start >= cut:
            break
        if not settled(cluster.end) or cluster.start < hold < cluster.end:
            # Its check has not seen what follows yet, or a match still in progress began
            # inside it (released now, the rest of that match would escape the merge).
            cut = max(len(context), cluster.begin)
            # Held from where its whole match began: a cluster taken before that ends past
            # there is held too (released, its redaction would cover held text).
            while taken and taken[-1].end > cut:
                cut = max(len(context), min(cut, taken.pop().begin))
            break
        taken.append(cluster)
        cut = max(cut, cluster.end)
    applied = [finding for cluster in taken for finding in cluster.findings]
    fired = tuple(dict.fromkeys(f.rule for f in applied))
    spans = [(start - seam, end - seam, marker) for start, end, marker in redactions(applied)]
    released = apply_redactions(text[seam:cut], spans)
    # The context is the original text (never sent again): a look-behind reads what the
    # whole-text scan would, not a redaction marker.
    return Advance(released, text[cut:], text[:cut][-CONTEXT_CHARS:], fired, None, spans)
