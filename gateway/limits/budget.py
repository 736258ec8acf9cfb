"""Budget arithmetic: may a reservation go ahead, and what settling leaves. No I/O.

A budget counter for one period holds `used` (settled, true usage) and `reserved`
(estimates of requests in flight). A request reserves its estimate; settling
moves it from `reserved` to its true amount in `used`; releasing (no upstream
answered) drops it. So the spend can pass the budget only by what requests
used beyond their own estimates: never by more than one estimate error each.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    OK = "ok"
    EXHAUSTED = "exhausted"  # used + reserved leaves no room for this estimate
    TOO_LARGE = "too_large"  # the estimate alone is more than the whole budget


@dataclass(frozen=True, slots=True)
class Counter:
    used: int = 0
    reserved: int = 0

    def remaining(self, limit: int) -> int:
        return max(0, limit - self.used - self.reserved)


def verdict(used: int, reserved: int, limit: int, amount: int) -> Verdict:
    """May `amount` be reserved on a counter at (used, reserved) under `limit`?"""
    if amount > limit:
        return Verdict.TOO_LARGE
    if used >= limit or used + reserved + amount > limit:
        return Verdict.EXHAUSTED
    return Verdict.OK


def check(counter: Counter, limit: int, amount: int) -> Verdict:
    return verdict(counter.used, counter.reserved, limit, amount)


def reserve(counter: Counter, amount: int) -> Counter:
    return Counter(counter.used, counter.reserved + amount)


def settled(
    used: int, reserved: int, amount: int, actual: int | None, *, is_held: bool
) -> tuple[int, int]:
    """(used, reserved) after dropping a reservation of `amount` (if it is still held: it
    may have expired and been dropped already) and adding the true amount (None: no
    upstream answered)."""
    # Plain comparisons, not min/max: it runs for every budget of every request.
    held = (amount if amount < reserved else reserved) if is_held else 0
    charged = actual if actual is not None and actual > 0 else 0
    return used + charged, reserved - held


def settle(counter: Counter, reserved: int, actual: int | None, *, is_held: bool) -> Counter:
    return Counter(*settled(counter.used, counter.reserved, reserved, actual, is_held=is_held))
