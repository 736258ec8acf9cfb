"""Per-deployment health: consecutive failures and cooldown. Pure; no clock reads.

A deployment cools down after `failure_threshold` consecutive failures, for
`cooldown_s` or the upstream's `retry-after`, whichever is longer. One success
resets the count.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Health:
    consecutive_failures: int = 0
    cooling_until: float = 0.0  # monotonic seconds

    def is_cooling(self, now: float) -> bool:
        return now < self.cooling_until


HEALTHY = Health()


def record_failure(
    health: Health,
    now: float,
    *,
    failure_threshold: int,
    cooldown_s: float,
    retry_after_s: float | None = None,
) -> Health:
    failures = health.consecutive_failures + 1
    if failures < failure_threshold:
        return Health(failures, health.cooling_until)
    pause = max(cooldown_s, retry_after_s or 0.0)
    return Health(failures, max(health.cooling_until, now + pause))


def record_success(health: Health) -> Health:
    return HEALTHY
