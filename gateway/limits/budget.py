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


def check(counter: Counter, limit: int, amount: int) -> Verdict:
    if amount > limit:
        return Verdict.TOO_LARGE
    if counter.used >= limit or counter.used + counter.reserved + amount > limit:
        return Verdict.EXHAUSTED
    return Verdict.OK


def reserve(counter: Counter, amount: int) -> Counter:
    return Counter(counter.used, counter.reserved + amount)


def settle(counter: Counter, reserved: int, actual: int | None, *, is_held: bool) -> Counter:
    """Drop a reservation of `reserved` (if it is still held: it may have expired and
    been dropped already) and add the true amount (None: no upstream answered)."""
    held = min(reserved, counter.reserved) if is_held else 0
    return Counter(counter.used + max(0, actual or 0), counter.reserved - held)
