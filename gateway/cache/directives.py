"""The client's say over the cache: its `Cache-Control` request directives (RFC 9111
§5.2.1), and `Pragma: no-cache` (§5.4), read as HTTP caches read them. Pure, no I/O.

Names are case-insensitive; several header lines are one comma-separated list; an
argument may be a token or a quoted string. What cannot be parsed is ignored, as
caches ignore what they do not understand: a directive whose argument is not
delta-seconds (`max-age=abc`, `max-age=-1`, `max-age=1.5`, `max-age` alone) counts
as absent. A directive given twice with different arguments keeps the strictest (the
smallest max-age, the largest min-fresh): each is a condition the client set.

Read: `no-store`, `no-cache`, `max-age`, `min-fresh`, `only-if-cached`. Ignored:
`max-stale` (the gateway never serves an entry past its ttl, so a client's
allowance for stale answers changes nothing) and every extension.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from gateway.cache.rules import CacheMode

# One directive: a token, optionally `=token` or `="quoted string"` (RFC 9110 §5.6).
_DIRECTIVE = re.compile(
    r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*)))?\s*(?:,|$)'
)
_QUOTED_PAIR = re.compile(r"\\(.)")
_DELTA_SECONDS = re.compile(r"[0-9]+")  # ASCII digits only: no sign, no "1_000", no "٣"
# RFC 9111 §1.2.2: a delta-seconds larger than any the cache can hold is read as 2^31.
MAX_DELTA_S = 2**31


@dataclass(frozen=True, slots=True)
class RequestDirectives:
    """What a request's `Cache-Control` asks of the cache (all absent by default)."""

    no_store: bool = False  # neither answer from the cache nor keep the answer
    no_cache: bool = False  # answer fresh from the upstream (and keep that answer)
    only_if_cached: bool = False  # never call the upstream: a stored answer or 504
    max_age_s: int | None = None  # serve only an entry at most this old
    min_fresh_s: int | None = None  # serve only an entry fresh for this much longer

    @property
    def mode(self) -> CacheMode:
        """Look up and store, only store, or neither. `max-age=0` reads as `no-cache`:
        no stored answer is younger than 0 s, so a lookup could never serve."""
        if self.no_store:
            return CacheMode.BYPASS
        if self.no_cache or self.max_age_s == 0:
            return CacheMode.REFRESH
        return CacheMode.USE


NONE = RequestDirectives()


def parsed(values: Iterable[str]) -> Iterator[tuple[str, str | None]]:
    """Each directive in header values as (lowercased name, argument or None); a quoted
    argument is unquoted. Unparsable text is skipped up to the next comma."""
    for value in values:
        position = 0
        while position < len(value):
            found = _DIRECTIVE.match(value, position)
            if found is None or found.end() == position:
                comma = value.find(",", position)
                if comma == -1:
                    break
                position = comma + 1
                continue
            name, quoted, token = found.group(1, 2, 3)
            argument = _QUOTED_PAIR.sub(r"\1", quoted) if quoted is not None else token
            yield name.lower(), argument
            position = found.end()


def directive_names(values: Iterable[str]) -> frozenset[str]:
    """The directive names in header values, lowercased."""
    return frozenset(name for name, _ in parsed(values))


def delta_seconds(argument: str | None) -> int | None:
    """A delta-seconds argument (RFC 9111 §1.2.2), capped at 2^31; None if it is not one."""
    if argument is None or _DELTA_SECONDS.fullmatch(argument) is None:
        return None
    return min(int(argument), MAX_DELTA_S)


def read_directives(values: Iterable[str]) -> RequestDirectives:
    """A request's `Cache-Control` values (one per header line) → its directives."""
    if not values:  # most requests send none: every request reads them (only-if-cached)
        return NONE
    names: set[str] = set()
    max_ages: list[int] = []
    min_freshes: list[int] = []
    for name, argument in parsed(values):
        if name == "max-age" or name == "min-fresh":
            seconds = delta_seconds(argument)
            if seconds is not None:
                (max_ages if name == "max-age" else min_freshes).append(seconds)
        else:
            names.add(name)
    if not names and not max_ages and not min_freshes:
        return NONE
    return RequestDirectives(
        no_store="no-store" in names,
        no_cache="no-cache" in names,
        only_if_cached="only-if-cached" in names,
        max_age_s=min(max_ages, default=None),
        min_fresh_s=max(min_freshes, default=None),
    )


def cache_control_of(cache_control: Sequence[str], pragma: Sequence[str]) -> tuple[str, ...]:
    """The `Cache-Control` values the cache reads: the request's own; or, when it sent no
    `Cache-Control` header, `no-cache` if its `Pragma` says so (RFC 9111 §5.4: HTTP/1.0
    clients). A `Cache-Control` header, whatever it says, makes `Pragma` ignored."""
    if cache_control:
        return tuple(cache_control)
    return ("no-cache",) if "no-cache" in directive_names(pragma) else ()
