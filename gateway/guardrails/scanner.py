"""One side (input or output) of a team's guardrails, compiled into one combined scan.

Every pattern of every rule goes into one RE2 `Set`: a single linear-time pass
over the text says which patterns occur at all (on clean text: none, and the
scan is over). Only the patterns that occur run again to find their spans, and
each hit passes its detector's check (Luhn, mod-97, entropy) before it counts.
Text is folded first (normalize.py); spans are mapped back to the original text.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import re2

from gateway.guardrails.detectors import BUILT_IN, VALUE, Check, PatternSpec
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.normalize import fold
from gateway.guardrails.patterns import max_match_chars, re2_options

REDACTED = "[REDACTED:{}]"


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule as decisions and records name it."""

    name: str
    kind: DetectorKind
    action: GuardAction


@dataclass(frozen=True, slots=True)
class RuleSource:
    """What the compiler hands in for one text rule (the schema's rule, reduced)."""

    rule: Rule
    pattern: str | None = None
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    rule: Rule
    start: int  # in the original text
    end: int


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    regex: re2._Regexp
    group: int  # the group to redact: VALUE's number, or 0 for the whole match
    check: Check | None


def keywords_pattern(keywords: Sequence[str]) -> str:
    """Case-insensitive whole words or phrases, as they look after folding."""
    alternatives = []
    for word in keywords:
        folded = re2.escape(fold(word).text)
        head = r"\b" if word[:1].isalnum() else ""
        tail = r"\b" if word[-1:].isalnum() else ""
        alternatives.append(f"{head}{folded}{tail}")
    return "(?i)(?:" + "|".join(alternatives) + ")"


def _specs(source: RuleSource) -> tuple[PatternSpec, ...]:
    if source.pattern is not None:
        return (PatternSpec(source.pattern, max_match_chars(source.pattern)),)
    if source.keywords:
        longest = max(len(fold(w).text) for w in source.keywords)
        return (PatternSpec(keywords_pattern(source.keywords), longest),)
    return BUILT_IN[source.rule.kind]


class Scanner:
    """The combined scan of one side's text rules, in the order they were written."""

    __slots__ = ("_compiled", "_set", "rules", "window_chars")

    def __init__(self, sources: Sequence[RuleSource]) -> None:
        self.rules = tuple(s.rule for s in sources)
        compiled: list[_Compiled] = []
        self._set: re2.Set | None = None
        widest = 0
        if sources:
            options = re2_options()
            self._set = re2.Set.SearchSet(options)
            for source in sources:
                for spec in _specs(source):
                    regex = re2.compile(spec.regex, options)
                    self._set.Add(spec.regex)
                    group = (regex.groupindex or {}).get(VALUE, 0)
                    compiled.append(_Compiled(source.rule, regex, group, spec.check))
                    widest = max(widest, spec.max_chars)
            self._set.Compile()
        self._compiled = tuple(compiled)
        # A stream holds back this many characters: the longest match any rule can make.
        self.window_chars = widest

    @property
    def is_empty(self) -> bool:
        return self._set is None

    def find(self, text: str) -> list[Finding]:
        """Every finding in `text`, spans in the original text, ordered by start."""
        if self._set is None or not text:
            return []
        folded = fold(text)
        hits = self._set.Match(folded.text)
        if not hits:
            return []
        found: list[Finding] = []
        for index in sorted(hits):
            item = self._compiled[index]
            for match in item.regex.finditer(folded.text):
                start, end = match.span(item.group)
                if start == end or (
                    item.check is not None and not item.check(folded.text, start, end)
                ):
                    continue
                orig_start, orig_end = folded.original_span(start, end)
                found.append(Finding(item.rule, orig_start, orig_end))
        found.sort(key=lambda f: (f.start, -f.end))
        return found


def redact(text: str, findings: Sequence[Finding]) -> str:
    """Replace each redacting finding's span; overlapping spans merge under the first
    rule's marker. Findings must be ordered by start (as `find` returns them)."""
    out: list[str] = []
    position = 0
    for finding in findings:
        if finding.rule.action is not GuardAction.REDACT:
            continue
        if finding.start < position:  # overlaps the previous redaction: widen it
            if finding.end > position:
                position = finding.end
            continue
        out.append(text[position : finding.start])
        out.append(REDACTED.format(finding.rule.name))
        position = finding.end
    if not out:
        return text
    out.append(text[position:])
    return "".join(out)
