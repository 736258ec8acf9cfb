"""One side (input or output) of a team's guardrails, compiled into one combined scan.

Every pattern of every rule goes into one RE2 `Set`: a single linear-time pass
over the text says which patterns occur at all (on clean text: none, and the
scan is over). Only the patterns that occur run again to find their spans, and
each hit passes its detector's check (Luhn, mod-97, entropy) before it counts.
Text is folded first (normalize.py); spans are mapped back to the original text.
Clean text costs nanoseconds a character; each match costs microseconds (its check, its
finding, its redaction), so a caller may bound the matches with a `MatchBudget`.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import re2

from gateway.guardrails.detectors import BUILT_IN, VALUE, Check, PatternSpec
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.normalize import Folded, fold, is_plain_ascii, readings_of
from gateway.guardrails.patterns import MAX_PROGRAM_BYTES, max_match_chars, re2_options, re2_refusal
from gateway.guardrails.prefixes import TailSearch
from gateway.guardrails.telltales import telltales
from gateway.pacing import pace

REDACTED = "[REDACTED:{}]"
Redaction = tuple[int, int, str]  # (start, end, marker): a span and what replaces it
TAIL_PROGRAM_BYTES = 32 << 20
PACE_EVERY_SEARCHES = 63  # a mask: MatchBudget paces every 64 searches
# Between a phrase's words: any run of the whitespace folding leaves (a space, a tab, a
# line break; NBSP, em and ideographic spaces fold to a space), or none, since folding
# drops a zero-width character: `project<ZWSP>falcon` reaches the scan as
# `projectfalcon`. Unbounded: RE2 expands a counted `{1,n}` n times a gap, past its
# program budget for a long list. ASCII only: a class with U+2028 (which folding keeps)
# takes a long list of phrases past RE2's budget too.
PHRASE_GAP = r"\s*"
# On a stream a keyword is held whole while it spans at most its folded length plus this
# many characters (whitespace between a phrase's words, invisible characters inside it);
# past that, its start may be released and the words pass there (whole texts: no cap).
PHRASE_HOLD_CHARS = 256


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
    # Where the whole match began (before `start` when a pattern redacts only its value,
    # as in `api_key = "<value>"`): a stream holding the finding back holds from here.
    begin: int


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    regex: re2._Regexp
    group: int  # the group to redact: VALUE's number, or 0 for the whole match
    check: Check | None


def keywords_pattern(keywords: Sequence[str]) -> str:
    """Case-insensitive whole words or phrases, as they look after folding: a phrase's
    words apart by any run of whitespace, or by none (`PHRASE_GAP`)."""
    alternatives = []
    for word in keywords:
        folded = fold(word).text
        words = folded.split()
        if len(words) > 1:
            body = PHRASE_GAP.join(re2.escape(w) for w in words)
            first, last = words[0], words[-1]
        else:  # one word (or none): as written, the whitespace around it included
            body, first, last = re2.escape(folded), word, word
        head = r"\b" if first[:1].isalnum() else ""
        tail = r"\b" if last[-1:].isalnum() else ""
        alternatives.append(f"{head}{body}{tail}")
    return "(?i)(?:" + "|".join(alternatives) + ")"


def _specs(source: RuleSource) -> tuple[PatternSpec, ...]:
    if source.pattern is not None:
        return (PatternSpec(source.pattern, max_match_chars(source.pattern)),)
    if source.keywords:
        # `PHRASE_GAP` has no bound: a stream holds the longest keyword plus
        # PHRASE_HOLD_CHARS, room for whitespace between a phrase's words and for what
        # folding drops inside a keyword (the window counts the original characters).
        longest = max(len(fold(w).text) for w in source.keywords)
        return (PatternSpec(keywords_pattern(source.keywords), longest + PHRASE_HOLD_CHARS),)
    return BUILT_IN[source.rule.kind]


class RulesRefused(Exception):
    """RE2 would not compile a side's rules: `position` is the rule (its index in the
    sources) that could not be compiled, or the largest when only together they fail."""

    def __init__(self, position: int, why: str) -> None:
        super().__init__(why)
        self.position = position
        self.why = why


class OutOfMatches(Exception):
    """A scan used up its `MatchBudget`; `rule` was matching when it did."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule.name)
        self.rule = rule


class MatchBudget:
    """How many more regex matches a scan may look at (a check-rejected one counts too:
    the cost is the look). Shared across the texts of one request or answer. A scan
    with a budget also paces itself on a worker thread (gateway/pacing.py): each RE2
    search releases the GIL, and thousands of them would keep the event loop waiting."""

    __slots__ = ("_searches", "left")

    def __init__(self, matches: int) -> None:
        self.left = matches
        self._searches = 0

    def spend(self, rule: Rule) -> None:
        self.left -= 1
        if self.left < 0:
            raise OutOfMatches(rule)
        self.searched()

    def searched(self) -> None:
        """One more RE2 search (a match, a text's combined pass): pacing.pace every 64."""
        self._searches += 1
        if not self._searches & PACE_EVERY_SEARCHES:
            pace()


class Scanner:
    """The combined scan of one side's text rules, in the order they were written."""

    __slots__ = ("_compiled", "_lines", "_set", "_tail", "_telltales", "rules", "window_chars")

    def __init__(self, sources: Sequence[RuleSource], *, holds_back: bool = True) -> None:
        """`holds_back=False`: a side no stream step reads (input) builds no tail search,
        the costliest program here (its hold is then "from `start`": everything)."""
        self.rules = tuple(s.rule for s in sources)
        compiled: list[_Compiled] = []
        self._set: re2.Set | None = None
        self._tail: TailSearch | None = None
        self._lines: re2.Set | None = None  # the patterns in multi-line mode (lines_clean)
        # ASCII characters one of which every match of every pattern contains (None: no
        # such set known, as for an admin's own pattern, which only RE2 reads as RE2 does).
        found: frozenset[str] | None = frozenset()
        widest = 0
        if sources:
            options = re2_options()
            self._set = re2.Set.SearchSet(options)
            regexes: list[str] = []
            sizes = [0] * len(sources)
            for position, source in enumerate(sources):
                for spec in _specs(source):
                    try:
                        regex = re2.compile(spec.regex, options)
                        self._set.Add(spec.regex)
                    except re2.error as exc:
                        raise RulesRefused(position, re2_refusal(exc)) from None
                    sizes[position] += len(spec.regex)
                    regexes.append(spec.regex)
                    group = (regex.groupindex or {}).get(VALUE, 0)
                    compiled.append(_Compiled(source.rule, regex, group, spec.check))
                    widest = max(widest, spec.max_chars)
                    mine = telltales(spec.regex) if source.pattern is None else None
                    found = None if found is None or mine is None else found | mine
            try:
                self._set.Compile()
            except re2.error:  # each compiled alone: only their union is too large
                largest = max(range(len(sources)), key=sizes.__getitem__)
                raise RulesRefused(largest, _too_large_together(self.rules)) from None
            if holds_back:
                self._tail = TailSearch(regexes, tail_options())
            self._lines = _lines_set(regexes)
        self._compiled = tuple(compiled)
        # As bytes: `_lacks_telltales` is one C pass over a text's bytes (a set's
        # `isdisjoint` looks each character up, ~10 ns a character).
        self._telltales = None if found is None else "".join(sorted(found)).encode()
        # A stream holds back this many characters: the longest match any rule can make.
        self.window_chars = widest

    @property
    def is_empty(self) -> bool:
        return self._set is None

    def lines_clean(self, lines: Sequence[str]) -> bool:
        """Whether no rule matches any of `lines` scanned alone, each as `find` would scan
        it (False: some may, or it cannot tell). One pass over the lines joined by newlines,
        every pattern in multi-line mode: `^`/`$` then match at each line's edges as at a
        lone text's, `\\b` sees a newline as a text's edge, and folding goes character by
        character; a pattern that reaches over a newline only makes it say False."""
        if self._set is None:
            return True
        text = "\n".join(lines)
        if self._lines is None or text.count("\n") != len(lines) - 1:
            return False
        folded = fold(text)
        return folded.reads_one_way and not self._lines.Match(folded.text)

    def is_clean(self, text: str, budget: MatchBudget | None = None) -> bool:
        """Whether `text` is ASCII with nothing to fold and no rule matches it: `find(text)`
        is then empty. No RE2 pass when it holds none of the side's telltales, else one
        over its bytes, and nothing made, for the usual text of a request or answer;
        False (some rule may match, or it must be folded first): ask `find`."""
        if self._set is None or not text:
            return True
        if not is_plain_ascii(text):
            return False
        data = text.encode("ascii")
        if self._lacks_telltales(data):
            return True
        if budget is not None:
            budget.searched()
        return not self._set.Match(data)

    def in_progress_from(self, text: str, start: int) -> int:
        """The earliest position at or after `start` where a match could have begun and
        not yet ended (`len(text)` when none could): a stream holds back from there."""
        return self._hold_read(readings_of(text), len(text), start)

    def find(self, text: str, start: int = 0, budget: MatchBudget | None = None) -> list[Finding]:
        """Every finding in `text` that starts at or after `start` (the text before it is
        context: a word boundary, a check's look-behind), spans in the original text,
        ordered by start. Matches are searched from `start` on, as a whole-text scan
        resumes after the match that ended there. Raises OutOfMatches when `budget`
        runs out."""
        if self._set is None or not text:
            return []
        return self._find_read(readings_of(text), start, budget)

    def scan_stream(
        self, text: str, start: int, *, final: bool, budget: MatchBudget | None = None
    ) -> tuple[list[Finding], int, int]:
        """`find(text, start)` and, unless `final`, `in_progress_from(text, start)`: one fold;
        and where the window's last `window_chars` + 1 characters begin, as folded (a key
        with an invisible character between its letters is twice as long as it reads: a
        window counted in the original's characters would let its first half out).

        ASCII text, the common case, has nothing to fold: its bytes go straight to both
        RE2 programs (a stream step runs this once per event, so the `Folded`, a second
        encoding and a layer of calls are worth saving), and the combined pass is skipped
        when the text has none of the telltale characters (telltales.py)."""
        length = len(text)
        if self._set is None or not text:
            return [], length, length
        if not is_plain_ascii(text):  # an ASCII control too: fold drops it (normalize.py)
            readings = readings_of(text)  # each folded once, for all three
            if final:
                return self._find_read(readings, start, budget), length, length
            hold = self._hold_read(readings, length, start)
            window = min(self._window_from(reading, length) for reading in readings)
            return self._find_read(readings, start, budget), hold, window
        data = text.encode("ascii")
        hold = length
        if not final and start < length:
            begin = self._tail.start_ascii(data, start) if self._tail is not None else start
            if begin is not None:
                hold = begin
        window = max(0, length - self.window_chars - 1)
        if self._lacks_telltales(data):
            return [], hold, window
        if not self._set.Match(data):
            return [], hold, window
        return self._find(Folded(text), start, budget), hold, window

    def _window_from(self, folded: Folded, length: int) -> int:
        """Where in the original the last `window_chars` + 1 characters of `folded` begin."""
        return folded.original_position(max(0, len(folded.text) - self.window_chars - 1), length)

    def clean_hold(self, text: str, start: int) -> int:
        """`scan_stream(text, start, final=False)`'s hold when `text` is ASCII and holds no
        match anywhere (its findings are then none), else -1. A stream's prose, once per
        event: one call, one RE2 pass (two when a telltale is in the text), nothing made."""
        if self._set is None or not text:
            return len(text)
        if not is_plain_ascii(text):
            return -1
        length = len(text)
        data = text.encode("ascii")
        hold = length
        if start < length:
            begin = self._tail.start_ascii(data, start) if self._tail is not None else start
            if begin is not None:
                hold = begin
        if self._lacks_telltales(data):
            return hold
        return -1 if self._set.Match(data) else hold

    def _lacks_telltales(self, data: bytes) -> bool:
        """Whether ASCII `data` holds none of the characters one of which every match
        holds (telltales.py): no rule can match it, and RE2's combined pass is skipped."""
        if self._telltales is None:
            return False
        return len(data.translate(None, self._telltales)) == len(data)

    def _hold_read(self, readings: list[Folded], length: int, start: int) -> int:
        """`_hold` of a text of `length` characters, read every way it reads."""
        return min(self._hold(reading, length, start) for reading in readings)

    def _find_read(
        self, readings: list[Folded], start: int, budget: MatchBudget | None
    ) -> list[Finding]:
        """`_find` on every reading of a text (`readings_of`: tags dropped, controls kept,
        invisible gaps as spaces): a tag inside a key hides it from one reading only. A
        finding several readings make counts once."""
        first, *others = readings
        found = self._find(first, start, budget)
        if not others:
            return found
        seen = {(f.rule, f.start, f.end) for f in found}
        for reading in others:
            more = [
                f
                for f in self._find(reading, start, budget)
                if (f.rule, f.start, f.end) not in seen
            ]
            seen.update((f.rule, f.start, f.end) for f in more)
            found.extend(more)
        found.sort(key=lambda f: (f.start, -f.end))
        return found

    def _hold(self, folded: Folded, length: int, start: int) -> int:
        if start >= length:
            return length
        if self._tail is None:  # built without a tail search: anything may be in progress
            return start
        begin = self._tail.start(folded.text, folded.folded_position(start))
        return length if begin is None else folded.original_position(begin, length)

    def _find(self, folded: Folded, start: int, budget: MatchBudget | None = None) -> list[Finding]:
        assert self._set is not None
        if budget is not None:
            budget.searched()
        hits = self._set.Match(folded.text)
        if not hits:
            return []
        origin = folded.folded_position(start)
        found: list[Finding] = []
        for index in sorted(hits):
            item = self._compiled[index]
            for match in item.regex.finditer(folded.text, origin):
                if budget is not None:
                    budget.spend(item.rule)
                begin, end = match.span(item.group)
                if begin == end or (
                    item.check is not None and not item.check(folded.text, begin, end)
                ):
                    continue
                orig_start, orig_end = folded.original_span(begin, end)
                head = folded.original_span(match.start(), match.start() + 1)[0]
                found.append(Finding(item.rule, orig_start, orig_end, min(head, orig_start)))
        found.sort(key=lambda f: (f.start, -f.end))
        return found


# What pins a pattern to the whole text even in multi-line mode (`\A`, `\z`, a flag
# group turning `m` off): a profile with one cannot check lines together.
_TEXT_ANCHORED = re.compile(r"\\[Az]|\(\?[a-zA-Z]*-[a-zA-Z]*m")


def _too_large_together(rules: Sequence[Rule]) -> str:
    names = ", ".join(dict.fromkeys(rule.name for rule in rules))
    return (
        f"this rule, the largest of those one scan combines ({names}: every rule on this "
        "side of the team's profiles), makes them compile to more than the "
        f"{MAX_PROGRAM_BYTES >> 20} MiB RE2 allows: use fewer or shorter keywords or patterns"
    )


def _lines_set(regexes: Sequence[str]) -> re2.Set | None:
    """Every pattern in multi-line mode, as one Set (`Scanner.lines_clean`)."""
    if any(_TEXT_ANCHORED.search(regex) for regex in regexes):
        return None
    lines = re2.Set.SearchSet(re2_options())
    try:
        for regex in regexes:
            lines.Add("(?m)" + regex)
        lines.Compile()
    except re2.error:  # a shortcut only: without it, lines are scanned one by one
        return None
    return lines


def tail_options() -> re2.Options:
    # The union of a profile's prefix regexes is a large automaton: with RE2's default
    # budget its DFA runs out of memory and falls back to a search ten times slower.
    options = re2_options()
    options.max_mem = TAIL_PROGRAM_BYTES
    return options


def redactions(findings: Sequence[Finding]) -> list[Redaction]:
    """The spans the redacting findings replace, each with its marker; overlapping spans
    merge under the first rule's marker. Findings must be ordered by start (as `find`
    returns them); the spans come out ordered and disjoint."""
    out: list[Redaction] = []
    for finding in findings:
        if finding.rule.action is not GuardAction.REDACT:
            continue
        if out and finding.start < out[-1][1]:  # overlaps the previous redaction: widen it
            start, end, marker = out[-1]
            if finding.end > end:
                out[-1] = (start, finding.end, marker)
            continue
        out.append((finding.start, finding.end, REDACTED.format(finding.rule.name)))
    return out


def apply_redactions(text: str, spans: Sequence[Redaction]) -> str:
    """`text` with each span (ordered, disjoint) replaced by its marker."""
    if not spans:
        return text
    out: list[str] = []
    position = 0
    for start, end, marker in spans:
        out.append(text[position:start])
        out.append(marker)
        position = end
    out.append(text[position:])
    return "".join(out)


def redact(text: str, findings: Sequence[Finding]) -> str:
    """Replace each redacting finding's span (see `redactions`)."""
    return apply_redactions(text, redactions(findings))
