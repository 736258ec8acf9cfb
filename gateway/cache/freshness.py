"""Whether a stored answer may still be served: pure arithmetic on its age, no I/O.

The team's (or model's) `ttl_s` in force at lookup decides, not the one at store: a
lowered ttl applies at once to entries already stored.
"""

from __future__ import annotations


def is_fresh(age_ms: int, ttl_s: int) -> bool:
    """An entry `age_ms` old is served under `ttl_s`. A negative age (another replica's
    clock ahead of ours) counts as 0."""
    return max(0, age_ms) < ttl_s * 1000
