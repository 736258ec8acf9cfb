"""The in-process limits backend: exact for one process (one event loop, no awaits
inside a decision, so a reservation is atomic by construction).

State is plain dicts (one set per team) of small mutable records, changed only
through the pure cores' arithmetic (budget.py, gcra.py). Holds expire by
their lease: every reservation first sweeps the expired ones.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

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
from gateway.limits.plan import Actual, BudgetCheck, Plan, RateKind, Unit

# A period's counter is kept this long past its end (late settles, the usage view).
KEEP_AFTER_PERIOD_MS = 86_400_000
PRUNE_ABOVE = 4096  # counters kept before old periods' ones are dropped
OK = Verdict.OK
TOKENS = RateKind.TOKENS


@dataclass(slots=True)
class _Budget:
    """One budget counter (budget.py's Counter, kept mutable: no object per change)."""

    used: int
    reserved: int
    expires_ms: int
    is_seeded: bool


@dataclass(slots=True)
class _Bucket:
    """One rate key's GCRA state (gcra.py's Bucket, kept mutable)."""

    stamp_ms: int
    level: int


@dataclass(slots=True)
class _Team:
    """One team's counters, by key: a request touches one team only."""

    budgets: dict[str, _Budget] = field(default_factory=dict)
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    in_flight: dict[str, set[str]] = field(default_factory=dict)


def _seeded(counters: dict[str, _Budget], key: str) -> bool:
    entry = counters.get(key)
    return entry is not None and entry.is_seeded


def first_refusal(refusals: list[RateRefusal]) -> RateRefusal | None:
    """Of several rate refusals, the one that says when all of them fit: the longest
    wait (one that can never fit wins outright)."""
    if not refusals:
        return None
    return max(refusals, key=lambda r: (r.retry_after_ms < 0, r.retry_after_ms))


class MemoryBackend:
    def __init__(self) -> None:
        self._teams: dict[str, _Team] = {}
        self._holds: dict[str, Hold] = {}
        self._expiries: list[tuple[int, str]] = []

    # --- the interface ---

    async def try_reserve(
        self, plan: Plan, hold_id: str, now_ms: int
    ) -> Hold | Refusal | NeedsSeed:
        return self.reserve_now(plan, hold_id, now_ms)

    def reserve_now(self, plan: Plan, hold_id: str, now_ms: int) -> Hold | Refusal | NeedsSeed:
        # One pass per kind of check, no intermediate objects on the way to a hold:
        # this runs on every request (~1 µs of it is ~1 % of the whole gateway's).
        if self._expiries and self._expiries[0][0] <= now_ms:
            self._sweep(now_ms)
        state = self._team(plan.team)
        counters = state.budgets
        entries = []
        for check in plan.budgets:
            entry = counters.get(check.key)
            if entry is None or not entry.is_seeded:
                return NeedsSeed(tuple(c for c in plan.budgets if not _seeded(counters, c.key)))
            entries.append(entry)
        for check, entry in zip(plan.budgets, entries, strict=True):
            verdict = budget.verdict(entry.used, entry.reserved, check.limit, check.amount)
            if verdict is not OK:
                return BudgetRefusal(check, verdict, Counter(entry.used, entry.reserved))
        in_flight = state.in_flight
        for conc in plan.concurrency:
            holders = in_flight.get(conc.key)
            count = 0 if holders is None else len(holders)
            if count >= conc.limit:
                return ConcurrencyRefusal(conc, count)
        buckets = state.buckets
        levels = []
        refusals: list[RateRefusal] = []
        for rate in plan.rates:
            bucket = buckets.get(rate.key)
            level = (
                0
                if bucket is None
                else gcra.drained(bucket.stamp_ms, bucket.level, now_ms, rate.limit)
            )
            wait = gcra.wait_ms(level, rate.limit, rate.amount)
            if wait != 0:
                refusals.append(RateRefusal(rate, wait, *gcra.view(level, rate.limit)))
            levels.append(level)
        if refusals:
            refused = first_refusal(refusals)
            assert refused is not None
            return refused
        # Every check passed: now, and only now, change state.
        for check, entry in zip(plan.budgets, entries, strict=True):
            entry.reserved += check.amount  # budget.reserve
        for conc in plan.concurrency:
            holders = in_flight.get(conc.key)
            if holders is None:
                holders = in_flight[conc.key] = set()
            holders.add(hold_id)
        views = []
        for rate, level in zip(plan.rates, levels, strict=True):
            new_level = gcra.filled(level, rate.amount)
            bucket = buckets.get(rate.key)
            if bucket is None:
                buckets[rate.key] = _Bucket(now_ms, new_level)
            else:
                bucket.stamp_ms, bucket.level = now_ms, new_level
            views.append(RateView(rate, *gcra.view(new_level, rate.limit)))
        expires_ms = now_ms + plan.lease_ms
        hold = Hold(hold_id, plan, tuple(views), expires_ms)
        self._holds[hold_id] = hold
        heapq.heappush(self._expiries, (expires_ms, hold_id))
        return hold

    async def seed(self, team: str, seeds: tuple[tuple[BudgetCheck, int], ...]) -> None:
        counters = self._team(team).budgets
        for check, used in seeds:
            entry = self._budget(counters, check)
            if not entry.is_seeded:
                entry.used += used
                entry.is_seeded = True
        # A new period's counters arrive here once each: the time to drop long-gone ones.
        if seeds and sum(len(t.budgets) for t in self._teams.values()) > PRUNE_ABOVE:
            now_ms = max(check.starts_ms for check, _ in seeds)
            for state in self._teams.values():
                old = [k for k, v in state.budgets.items() if v.expires_ms < now_ms]
                for key in old:
                    del state.budgets[key]

    def settle(self, hold: Hold, actual: Actual | None, now_ms: int) -> None:
        if not hold.is_checked:
            return
        is_held = self._holds.pop(hold.id, None) is not None
        self._settle(hold, actual, is_held=is_held, adjust_rates=True)

    async def snapshot(self, plan: Plan, now_ms: int) -> Snapshot:
        self._sweep(now_ms)
        state = self._team(plan.team)
        budgets = []
        for check in plan.budgets:
            entry = state.budgets.get(check.key)
            seeded = entry is not None and entry.is_seeded
            budgets.append(Counter(entry.used, entry.reserved) if entry and seeded else None)
        rates = []
        for rate in plan.rates:
            bucket = state.buckets.get(rate.key)
            level = (
                0
                if bucket is None
                else gcra.drained(bucket.stamp_ms, bucket.level, now_ms, rate.limit)
            )
            rates.append(gcra.view(level, rate.limit))
        conc = tuple(len(state.in_flight.get(c.key, ())) for c in plan.concurrency)
        return Snapshot(tuple(budgets), tuple(rates), conc)

    async def health(self) -> str:
        return "ok"

    async def close(self) -> None:
        return None

    # --- state ---

    def _team(self, team: str) -> _Team:
        state = self._teams.get(team)
        if state is None:
            state = self._teams[team] = _Team()
        return state

    @staticmethod
    def _budget(counters: dict[str, _Budget], check: BudgetCheck) -> _Budget:
        entry = counters.get(check.key)
        if entry is None:
            entry = counters[check.key] = _Budget(
                0, 0, check.resets_ms + KEEP_AFTER_PERIOD_MS, is_seeded=False
            )
        return entry

    def _settle(
        self, hold: Hold, actual: Actual | None, *, is_held: bool, adjust_rates: bool
    ) -> None:
        plan = hold.plan
        state = self._team(plan.team)
        for check in plan.budgets:
            entry = self._budget(state.budgets, check)
            if actual is None:
                amount = None
            else:
                amount = actual.tokens if check.unit is Unit.TOKENS else actual.nanousd
            entry.used, entry.reserved = budget.settled(
                entry.used, entry.reserved, check.amount, amount, is_held=is_held
            )
        if is_held:
            for conc in plan.concurrency:
                holders = state.in_flight.get(conc.key)
                if holders is not None:
                    holders.discard(hold.id)
        if not adjust_rates:
            return
        for rate in plan.rates:
            # A lapsed lease leaves its tokens counted; the late settle corrects them once.
            if rate.kind is TOKENS:
                delta = (0 if actual is None else actual.tokens) - rate.amount
                bucket = state.buckets.get(rate.key)
                if bucket is None:
                    state.buckets[rate.key] = _Bucket(0, gcra.adjusted(0, delta))
                else:
                    bucket.level = gcra.adjusted(bucket.level, delta)

    def _sweep(self, now_ms: int) -> None:
        """Free the holds whose lease ran out (their replica's request never settled)."""
        while self._expiries and self._expiries[0][0] <= now_ms:
            _, hold_id = heapq.heappop(self._expiries)
            hold = self._holds.pop(hold_id, None)
            if hold is not None:
                self._settle(hold, None, is_held=True, adjust_rates=False)
