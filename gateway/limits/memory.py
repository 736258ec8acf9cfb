"""The in-process limits backend: exact for one process (one event loop, no awaits
inside a decision, so a reservation is atomic by construction).

State is plain dicts over the pure cores (budget.py, gcra.py). Holds expire by
their lease: every reservation first sweeps the expired ones.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from gateway.limits import budget, gcra
from gateway.limits.answers import (
    BudgetRefusal,
    ConcurrencyRefusal,
    RateRefusal,
    RateView,
    Refusal,
)
from gateway.limits.backend import Hold, NeedsSeed, Snapshot
from gateway.limits.budget import Counter, Verdict
from gateway.limits.plan import Actual, BudgetCheck, Plan, RateKind

Key = tuple[str, str]  # (team, counter key)
# A period's counter is kept this long past its end (late settles, the usage view).
KEEP_AFTER_PERIOD_MS = 86_400_000
EMPTY_BUCKET = gcra.Bucket()
PRUNE_ABOVE = 4096  # counters kept before old periods' ones are dropped


@dataclass(slots=True)
class _Budget:
    counter: Counter
    expires_ms: int
    is_seeded: bool


def first_refusal(refusals: list[RateRefusal]) -> RateRefusal | None:
    """Of several rate refusals, the one that says when all of them fit: the longest
    wait (one that can never fit wins outright)."""
    if not refusals:
        return None
    return max(refusals, key=lambda r: (r.retry_after_ms < 0, r.retry_after_ms))


class MemoryBackend:
    def __init__(self) -> None:
        self._budgets: dict[Key, _Budget] = {}
        self._buckets: dict[Key, gcra.Bucket] = {}
        self._in_flight: dict[Key, set[str]] = {}
        self._holds: dict[str, Hold] = {}
        self._expiries: list[tuple[int, str]] = []

    # --- the interface ---

    async def try_reserve(
        self, plan: Plan, hold_id: str, now_ms: int
    ) -> Hold | Refusal | NeedsSeed:
        return self.reserve_now(plan, hold_id, now_ms)

    def reserve_now(self, plan: Plan, hold_id: str, now_ms: int) -> Hold | Refusal | NeedsSeed:
        self._sweep(now_ms)
        team = plan.team
        unseeded = tuple(
            c for c in plan.budgets if not self._budget(team, c, create=False).is_seeded
        )
        if unseeded:
            return NeedsSeed(unseeded)
        for check in plan.budgets:
            counter = self._budget(team, check).counter
            verdict = budget.check(counter, check.limit, check.amount)
            if verdict is not Verdict.OK:
                return BudgetRefusal(check, verdict, counter)
        for conc in plan.concurrency:
            in_flight = len(self._in_flight.get((team, conc.key), ()))
            if in_flight >= conc.limit:
                return ConcurrencyRefusal(conc, in_flight)
        states = [
            gcra.decide(self._bucket(team, r.key), now_ms, r.limit, r.amount) for r in plan.rates
        ]
        refused = first_refusal(
            [
                RateRefusal(r, s.retry_after_ms, s.remaining, s.reset_ms)
                for r, s in zip(plan.rates, states, strict=True)
                if not s.is_allowed
            ]
        )
        if refused is not None:
            return refused
        # Every check passed: now, and only now, change state.
        for check in plan.budgets:
            entry = self._budget(team, check)
            entry.counter = budget.reserve(entry.counter, check.amount)
        for conc in plan.concurrency:
            self._in_flight.setdefault((team, conc.key), set()).add(hold_id)
        views = []
        for rate, state in zip(plan.rates, states, strict=True):
            self._buckets[(team, rate.key)] = state.bucket
            views.append(RateView(rate, state.remaining, state.reset_ms))
        hold = Hold(hold_id, plan, tuple(views), now_ms + plan.lease_ms)
        self._holds[hold_id] = hold
        heapq.heappush(self._expiries, (hold.expires_ms, hold_id))
        return hold

    async def seed(self, team: str, seeds: tuple[tuple[BudgetCheck, int], ...]) -> None:
        for check, used in seeds:
            entry = self._budget(team, check)
            if not entry.is_seeded:
                entry.counter = Counter(entry.counter.used + used, entry.counter.reserved)
                entry.is_seeded = True
        # A new period's counters arrive here once each: the time to drop long-gone ones.
        if seeds and len(self._budgets) > PRUNE_ABOVE:
            now_ms = max(check.starts_ms for check, _ in seeds)
            for key in [k for k, v in self._budgets.items() if v.expires_ms < now_ms]:
                del self._budgets[key]

    def settle(self, hold: Hold, actual: Actual | None, now_ms: int) -> None:
        if not hold.is_checked:
            return
        is_held = self._holds.pop(hold.id, None) is not None
        self._settle(hold, actual, is_held=is_held, adjust_rates=True)

    async def snapshot(self, plan: Plan, now_ms: int) -> Snapshot:
        self._sweep(now_ms)
        team = plan.team
        budgets = []
        for check in plan.budgets:
            entry = self._budgets.get((team, check.key))
            budgets.append(entry.counter if entry is not None and entry.is_seeded else None)
        rates = tuple(gcra.state_of(self._bucket(team, r.key), now_ms, r.limit) for r in plan.rates)
        conc = tuple(len(self._in_flight.get((team, c.key), ())) for c in plan.concurrency)
        return Snapshot(tuple(budgets), rates, conc)

    async def health(self) -> str:
        return "ok"

    async def close(self) -> None:
        return None

    # --- state ---

    def _budget(self, team: str, check: BudgetCheck, *, create: bool = True) -> _Budget:
        key = (team, check.key)
        entry = self._budgets.get(key)
        if entry is None:
            entry = _Budget(Counter(), check.resets_ms + KEEP_AFTER_PERIOD_MS, is_seeded=False)
            if create:
                self._budgets[key] = entry
        return entry

    def _bucket(self, team: str, key: str) -> gcra.Bucket:
        return self._buckets.get((team, key)) or EMPTY_BUCKET

    def _settle(
        self, hold: Hold, actual: Actual | None, *, is_held: bool, adjust_rates: bool
    ) -> None:
        team, plan = hold.plan.team, hold.plan
        for check in plan.budgets:
            entry = self._budget(team, check)
            amount = None if actual is None else check.actual(actual)
            entry.counter = budget.settle(entry.counter, check.amount, amount, is_held=is_held)
        if is_held:
            for conc in plan.concurrency:
                self._in_flight.get((team, conc.key), set()).discard(hold.id)
        for rate in plan.rates if adjust_rates else ():
            # A lapsed lease leaves its tokens counted; the late settle corrects them once.
            if rate.kind is RateKind.TOKENS:
                true_tokens = 0 if actual is None else actual.tokens
                key = (team, rate.key)
                self._buckets[key] = gcra.adjust(
                    self._bucket(team, rate.key), true_tokens - rate.amount
                )

    def _sweep(self, now_ms: int) -> None:
        """Free the holds whose lease ran out (their replica's request never settled)."""
        while self._expiries and self._expiries[0][0] <= now_ms:
            _, hold_id = heapq.heappop(self._expiries)
            hold = self._holds.pop(hold_id, None)
            if hold is not None:
                self._settle(hold, None, is_held=True, adjust_rates=False)
