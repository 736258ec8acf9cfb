"""Per-deployment health: consecutive failures and cooldown. Pure; no clock reads.

A deployment cools down after `failure_threshold` consecutive failures, for
`cooldown_s` or the upstream's `retry-after`, whichever is longer, but for at most
`RETRY_AFTER_CAP_S` on the upstream's word alone. One success resets the count.
"""

from __future__ import annotations

from dataclasses import dataclass

# The longest an upstream's Retry-After is taken at its word (seconds). Rate-limit windows
# are a minute or less; a larger number (a day's quota, an HTTP-date far ahead, a bad
# clock) would sideline a fallback for as long as it says. Past 5 minutes the deployment
# gets one probe attempt, which re-cools it if the upstream still refuses: one wasted
# attempt per 5 minutes against a deployment lost for a day. `cooldown_s` may be longer.
RETRY_AFTER_CAP_S = 300.0


def bounded_retry_after(retry_after_s: float | None) -> float | None:
    """An upstream's Retry-After as the gateway honours it: at most RETRY_AFTER_CAP_S."""
    return None if retry_after_s is None else min(retry_after_s, RETRY_AFTER_CAP_S)


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
    pause = max(cooldown_s, bounded_retry_after(retry_after_s) or 0.0)
    return Health(failures, max(health.cooling_until, now + pause))


def record_success(health: Health) -> Health:
    return HEALTHY
