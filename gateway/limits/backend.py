"""The limits backend interface, and the values that cross it.

Two backends implement it: `memory.py` (one process) and `redis_backend.py` (any
number of processes and hosts). Both reserve every check of a plan at once, all
or nothing; both keep a reservation only for its lease; both settle a hold once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

from gateway.limits.answers import RateView, Refusal
from gateway.limits.budget import Counter
from gateway.limits.plan import Actual, BudgetRule, Plan


class BackendUnavailable(Exception):
    """The backend (Redis, or the ledger while rebuilding) did not answer."""


class Hold(NamedTuple):  # one per request: a NamedTuple costs a third of a dataclass
    """A reservation a request holds until `settle`; only settle (or its lease) frees it."""

    id: str
    plan: Plan
    expires_ms: int
    # The tightest rate key of each kind after the reservation (the x-ratelimit-* headers);
    # None: the plan has no key of that kind.
    requests: RateView | None = None
    tokens: RateView | None = None
    is_checked: bool = True  # False: the backend was unreachable and the policy says open


@dataclass(frozen=True, slots=True)
class NeedsSeed:
    """These budget counters have no usage yet in the backend: rebuild them from the ledger."""

    checks: tuple[BudgetRule, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A plan's counters now, for the usage view (None: not rebuilt yet, unknown)."""

    budgets: tuple[Counter | None, ...]
    rates: tuple[tuple[int, int], ...]  # (remaining, reset_ms)
    concurrency: tuple[int, ...]  # requests in flight


Decision = Hold | Refusal | NeedsSeed


class LimitsBackend(Protocol):
    def reserve_now(self, plan: Plan, hold_id: str, now_ms: int) -> Decision | None:
        """try_reserve without waiting, for a backend that decides in this process;
        None: it cannot (it must ask a server), await try_reserve."""
        ...

    async def try_reserve(self, plan: Plan, hold_id: str, now_ms: int) -> Decision:
        """All of `plan` or nothing. Raises BackendUnavailable."""
        ...

    async def seed(self, team: str, seeds: tuple[tuple[BudgetRule, int], ...]) -> None:
        """Add rebuilt usage to counters not yet rebuilt (a second seed is ignored)."""
        ...

    def settle(self, hold: Hold, actual: Actual | None) -> None:
        """Free the hold and charge `actual` (None: no upstream answered). Never blocks:
        a remote backend does it in the background."""
        ...

    async def snapshot(self, plan: Plan, now_ms: int) -> Snapshot: ...

    async def health(self) -> str:
        """'ok', or why not (for /readyz)."""
        ...

    async def close(self) -> None: ...
