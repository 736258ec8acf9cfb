"""The limits backend interface, and the values that cross it.

Two backends implement it: `memory.py` (one process) and `redis_backend.py` (any
number of processes and hosts). Both reserve every check of a plan at once, all
or nothing; both keep a reservation only for its lease; both settle a hold once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.limits.answers import RateView, Refusal
from gateway.limits.budget import Counter
from gateway.limits.plan import Actual, BudgetCheck, Plan


class BackendUnavailable(Exception):
    """The backend (Redis, or the ledger while rebuilding) did not answer."""


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation a request holds until `settle`; only settle (or its lease) frees it."""

    id: str
    plan: Plan
    rates: tuple[RateView, ...]  # for the x-ratelimit-* headers
    expires_ms: int
    is_checked: bool = True  # False: the backend was unreachable and the policy says open


@dataclass(frozen=True, slots=True)
class NeedsSeed:
    """These budget counters have no usage yet in the backend: rebuild them from the ledger."""

    checks: tuple[BudgetCheck, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A plan's counters now, for the usage view (None: not rebuilt yet, unknown)."""

    budgets: tuple[Counter | None, ...]
    rates: tuple[tuple[int, int], ...]  # (remaining, reset_ms)
    concurrency: tuple[int, ...]  # requests in flight


class LimitsBackend(Protocol):
    async def try_reserve(
        self, plan: Plan, hold_id: str, now_ms: int
    ) -> Hold | Refusal | NeedsSeed:
        """All of `plan` or nothing. Raises BackendUnavailable."""
        ...

    async def seed(self, team: str, seeds: tuple[tuple[BudgetCheck, int], ...]) -> None:
        """Add rebuilt usage to counters not yet rebuilt (a second seed is ignored)."""
        ...

    def settle(self, hold: Hold, actual: Actual | None, now_ms: int) -> None:
        """Free the hold and charge `actual` (None: no upstream answered). Never blocks:
        a remote backend does it in the background."""
        ...

    async def snapshot(self, plan: Plan, now_ms: int) -> Snapshot: ...

    async def health(self) -> str:
        """'ok', or why not (for /readyz)."""
        ...

    async def close(self) -> None: ...
