"""Whether a stored answer may be served: pure arithmetic on its age, the policy's ttl
and the request's directives; no I/O, no clock read.

The team's (or model's) `ttl_s` in force at lookup decides, not the one at store: a
lowered ttl applies at once to entries already stored. Within it, the client may ask
for younger entries (`max-age`), for entries fresh for a while longer (`min-fresh`),
for none (`no-cache`, `no-store`), or for no upstream call (`only-if-cached`).
"""

from __future__ import annotations

from enum import StrEnum

from gateway.cache.directives import RequestDirectives
from gateway.cache.rules import CacheMode


class Verdict(StrEnum):
    """What a request under a cache policy gets, given what is stored."""

    SERVE = "serve"  # the stored answer
    REFRESH = "refresh"  # the upstream's (kept for the next request unless no-store)
    REFUSE = "refuse"  # only-if-cached and nothing servable: 504, no upstream call


def is_fresh(age_ms: int, ttl_s: int) -> bool:
    """An entry `age_ms` old is served under `ttl_s`. A negative age (another replica's
    clock ahead of ours) counts as 0."""
    return max(0, age_ms) < ttl_s * 1000


def is_servable(request: RequestDirectives, age_ms: int, ttl_s: int) -> bool:
    """May an entry `age_ms` old answer this request under `ttl_s`? Fresh, and within
    the request's `max-age` (age ≤ N s) and `min-fresh` (age + N s ≤ ttl)."""
    if request.mode is not CacheMode.USE:  # no-store, no-cache, max-age=0
        return False
    age_ms = max(0, age_ms)
    if not is_fresh(age_ms, ttl_s):
        return False
    if request.max_age_s is not None and age_ms > request.max_age_s * 1000:
        return False
    return request.min_fresh_s is None or age_ms + request.min_fresh_s * 1000 <= ttl_s * 1000


def decide(request: RequestDirectives, age_ms: int | None, ttl_s: int) -> Verdict:
    """Serve, refresh or refuse. `age_ms` is the stored entry's age; None when nothing
    is stored, or nothing this request may be answered with (not cacheable, the
    backend down, an entry it cannot render)."""
    if age_ms is not None and is_servable(request, age_ms, ttl_s):
        return Verdict.SERVE
    return Verdict.REFUSE if request.only_if_cached else Verdict.REFRESH
