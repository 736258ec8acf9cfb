"""The limits backend interface, and the values that cross it.

Two backends implement it: `memory.py` (one process) and `redis_backend.py` (any
number of processes and hosts). Both reserve every check of a plan at once, all
or nothing; both keep a reservation only for its lease; both settle a hold once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol, final

from gateway.limits.answers import RateView, Refusal
from gateway.limits.budget import Counter
from gateway.limits.plan import Actual, BudgetRule, Plan


class BackendUnavailable(Exception):
    """The backend (Redis, or the ledger while rebuilding) did not answer."""


class LedgerUnreadable(BackendUnavailable):
    """The ledger, which budget counters are rebuilt from, did not answer (its database)."""


@final
class Hold:  # one per request: a native class (plan.py says why)
    """A reservation a request holds until `settle`; only settle (or its lease) frees it."""

    __slots__ = ("expires_ms", "id", "is_checked", "plan", "requests", "spare_slots", "tokens")

    def __init__(
        self,
        id: str,
        plan: Plan,
        expires_ms: int,
        requests: RateView | None = None,
        tokens: RateView | None = None,
        is_checked: bool = True,
        spare_slots: int = -1,
    ) -> None:
        self.id: Final = id
        self.plan: Final = plan
        self.expires_ms: Final = expires_ms
        # The tightest rate key of each kind after the reservation (the x-ratelimit-*
        # headers); None: the plan has no key of that kind.
        self.requests: Final = requests
        self.tokens: Final = tokens
        # False: the backend was unreachable and the policy says open
        self.is_checked: Final = is_checked
        # Redis: the fewest slots a concurrency key of the plan had left free once this
        # hold took one (its settle is written at once when few are); -1: not known.
        self.spare_slots: Final = spare_slots

    @property
    def started_ms(self) -> int:
        """When the reservation was made (its lease runs from then)."""
        return self.expires_ms - self.plan.lease_ms

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hold) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return (
            f"Hold(id={self.id!r}, plan={self.plan!r}, expires_ms={self.expires_ms}, "
            f"requests={self.requests!r}, tokens={self.tokens!r}, is_checked={self.is_checked})"
        )

    def _fields(self) -> tuple[str, Plan, int, RateView | None, RateView | None, bool]:
        return (self.id, self.plan, self.expires_ms, self.requests, self.tokens, self.is_checked)


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

    async def before_rebuild(self, team: str) -> None:
        """Called before the team's counters are rebuilt from the ledger (by a reserve or
        the usage view): a backend that lost them may wait there for late ledger rows.
        Raises BackendUnavailable."""
        ...

    async def seed(self, team: str, seeds: tuple[tuple[BudgetRule, int], ...]) -> None:
        """Add rebuilt usage to counters not yet rebuilt (a second seed is ignored). Each
        counter made here adopts, as reserved, the estimates of the team's holds in flight
        it applies to (plan.adopted_amount), freed once with each hold."""
        ...

    def settle(self, hold: Hold, actual: Actual | None, now_ms: int | None = None) -> None:
        """Free the hold and charge `actual` (None: no upstream answered) at `now_ms` (a
        refund to a rate bucket is bounded by what may be left of the reservation then:
        gcra.settled_delta; None: unbounded). Never blocks: a remote backend does it in
        the background."""
        ...

    def charge_unreserved(
        self,
        team: str,
        subject: str,
        charge_id: str,
        added: tuple[BudgetRule, ...],
        actual: Actual,
        finished_ms: int,
    ) -> None:
        """Charge `actual` to budgets a request did not reserve on: added to the policy (or
        moved, by a new timezone) while it was in flight. Each only if its counter was
        rebuilt from the ledger before the request finished; one rebuilt later, or not
        yet, has the request's ledger row in its sum. `charge_id` (unique per request)
        marks it charged where a backend may send it twice. Never blocks."""
        ...

    async def snapshot(self, plan: Plan, now_ms: int) -> Snapshot: ...

    async def health(self) -> str:
        """'ok', or why not (for /readyz)."""
        ...

    async def close(self) -> None: ...
