"""The in-process limits backend: exact for one process (one event loop, no awaits
inside a decision, so a reservation is atomic by construction).

State is plain dicts (one set per team) of small mutable records, changed only
through the pure cores' arithmetic (budget.py, gcra.py). A shape's records are
found once and kept with it (`_Bound`): a request reads and changes them with no
lookup by key. Holds expire by their lease: a reservation first frees the lapsed
ones, once some may have lapsed.

A counter rebuilt from the ledger while holds are in flight (a budget added, or its
period or timezone changed) adopts the reservations of those it applies to
(plan.adopted_amount): the ledger holds only finished requests. Each hold's adopted
amounts are kept by its id and freed with it, once, by its settle or its lease end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, NamedTuple

from gateway.limits import budget, gcra
from gateway.limits.answers import (
    BudgetRefusal,
    ConcurrencyRefusal,
    RateRefusal,
    RateView,
    Refusal,
    is_tighter,
    tightest,
)
from gateway.limits.backend import Decision, Hold, NeedsSeed, Snapshot
from gateway.limits.budget import Counter, Verdict
from gateway.limits.plan import (
    Actual,
    BudgetRule,
    Plan,
    RateKind,
    Shape,
    Unit,
    adopted_amount,
)

# A period's counter is kept this long past its end (late settles, the usage view).
KEEP_AFTER_PERIOD_MS: Final = 86_400_000
PRUNE_ABOVE: Final = 4096  # counters kept before old periods' ones are dropped
OK: Final = Verdict.OK
TOKENS: Final = RateKind.TOKENS
TOKEN_BUDGET: Final = Unit.TOKENS
NEVER: Final = 2**63  # an instant after every lease end
BOUND_KEPT: Final = 8192  # shapes whose records are kept found; more and it starts over


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
class _Gauge:
    """One concurrency key: the requests holding it now."""

    count: int = 0


@dataclass(slots=True)
class _Team:
    """One team's counters, by key: a request touches one team only."""

    budgets: dict[str, _Budget] = field(default_factory=dict)
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    gauges: dict[str, _Gauge] = field(default_factory=dict)


class _Bound(NamedTuple):
    """A shape's records, found once (a shape lives for a minute; its records longer),
    each with what a request needs of its rule: the limit, and whether it counts tokens
    (else nano-USD for a budget, requests for a rate)."""

    shape: Shape
    budgets: tuple[tuple[_Budget, int, bool], ...]
    gauges: tuple[tuple[_Gauge, int], ...]
    rates: tuple[tuple[_Bucket, int, bool], ...]


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
        self._holds: dict[str, Hold] = {}  # unsettled, by id
        self._bound: dict[int, _Bound] = {}  # by id(shape), checked against the shape
        # Reservations a rebuilt counter adopted from holds in flight, by hold id
        self._adopted: dict[str, list[tuple[_Budget, int]]] = {}
        # No hold lapses before this instant (a lower bound: settles do not raise it, the
        # next sweep does). Checked per reservation; no entry per hold to keep in order.
        self._next_expiry_ms = NEVER

    # --- the interface ---

    async def try_reserve(self, plan: Plan, hold_id: str, now_ms: int) -> Decision:
        return self.reserve_now(plan, hold_id, now_ms)

    def reserve_now(self, plan: Plan, hold_id: str, now_ms: int) -> Decision:
        # Straight from the plan's shape and two amounts to a hold, one pure-core call
        # per check, on records found once per shape: no object per check and no lookup
        # by key (this runs on every request). A failing check hands over to _refusal,
        # which works out the answer in the general order.
        if now_ms >= self._next_expiry_ms:
            self._sweep(now_ms)
        tokens, nanousd = plan.tokens, plan.nanousd
        bound = self._bound_of(plan.shape)
        for entry, limit, counts_tokens in bound.budgets:
            amount = tokens if counts_tokens else nanousd
            if (
                not entry.is_seeded
                or budget.verdict(entry.used, entry.reserved, limit, amount) is not OK
            ):
                return self._refusal(plan, now_ms)
        for gauge, limit in bound.gauges:
            if gauge.count >= limit:
                return self._refusal(plan, now_ms)
        levels = []  # each key's level once this request passes
        for bucket, limit, counts_tokens in bound.rates:
            level = gcra.taken(
                bucket.stamp_ms, bucket.level, now_ms, limit, tokens if counts_tokens else 1
            )
            if level is None:
                return self._refusal(plan, now_ms)
            levels.append(level)
        # Every check passed: now, and only now, change state.
        for entry, _, counts_tokens in bound.budgets:  # budget.reserve
            entry.reserved += tokens if counts_tokens else nanousd
        for gauge, _ in bound.gauges:
            gauge.count += 1
        requests = tokens_view = None
        for (bucket, limit, counts_tokens), level in zip(bound.rates, levels):  # noqa: B905  one level per rate, above
            bucket.stamp_ms, bucket.level = now_ms, level
            remaining, reset_ms = gcra.view(level, limit)
            if counts_tokens:
                if is_tighter(remaining, reset_ms, tokens_view):
                    tokens_view = RateView(limit, remaining, reset_ms)
            elif is_tighter(remaining, reset_ms, requests):
                requests = RateView(limit, remaining, reset_ms)
        expires_ms = now_ms + plan.lease_ms
        hold = self._holds[hold_id] = Hold(hold_id, plan, expires_ms, requests, tokens_view)
        if expires_ms < self._next_expiry_ms:
            self._next_expiry_ms = expires_ms
        return hold

    def _refusal(self, plan: Plan, now_ms: int) -> Refusal | NeedsSeed:
        """Why `plan` cannot be reserved (the fast path found some check that fails): the
        first budget that refuses, else the first full concurrency, else the longest
        rate wait; with the rate keys' views as they stand. Changes nothing."""
        state = self._team(plan.team)
        counters = state.budgets
        checks = plan.budgets
        unseeded = tuple(c for c in checks if not _seeded(counters, c.key))
        if unseeded:
            return NeedsSeed(unseeded)
        levels = [self._level(state, rate.key, now_ms, rate.limit) for rate in plan.rates]
        views = tightest(
            (rate.kind, rate.limit, *gcra.view(level, rate.limit))
            for rate, level in zip(plan.rates, levels, strict=True)
        )
        for check in checks:
            entry, amount = counters[check.key], plan.amount(check)
            verdict = budget.verdict(entry.used, entry.reserved, check.limit, amount)
            if verdict is not OK:
                counter = Counter(entry.used, entry.reserved)
                return BudgetRefusal(check, amount, verdict, counter, views)
        for conc in plan.concurrency:
            count = self._in_flight(state, conc.key)
            if count >= conc.limit:
                return ConcurrencyRefusal(conc, count, views)
        refusals: list[RateRefusal] = []
        for rate, level in zip(plan.rates, levels, strict=True):
            amount = plan.amount(rate)
            wait = gcra.wait_ms(level, rate.limit, amount)
            if wait != 0:
                view = gcra.view(level, rate.limit)
                refusals.append(RateRefusal(rate, amount, wait, *view, views))
        refused = first_refusal(refusals)
        assert refused is not None, "_refusal is called only when some check fails"
        return refused

    async def before_rebuild(self, team: str) -> None:
        return None  # nothing is lost while the process lives: the counters it has are right

    async def seed(self, team: str, seeds: tuple[tuple[BudgetRule, int], ...]) -> None:
        counters = self._team(team).budgets
        rebuilt: list[tuple[BudgetRule, _Budget]] = []
        for check, used in seeds:
            entry = self._budget(counters, check)
            if not entry.is_seeded:
                entry.used += used
                entry.is_seeded = True
                rebuilt.append((check, entry))
        if rebuilt:
            self._adopt(team, rebuilt)
        # A new period's counters arrive here once each: the time to drop long-gone ones.
        if seeds and sum(len(t.budgets) for t in self._teams.values()) > PRUNE_ABOVE:
            now_ms = max(check.starts_ms for check, _ in seeds)
            for state in self._teams.values():
                old = [k for k, v in state.budgets.items() if v.expires_ms < now_ms]
                for key in old:
                    del state.budgets[key]
            self._bound.clear()  # some shape may hold a dropped record: find them anew

    def _adopt(self, team: str, rebuilt: list[tuple[BudgetRule, _Budget]]) -> None:
        """The team's holds in flight reserve on the counters just rebuilt, where they
        apply: their requests are not in the ledger's sum, and their settles do not reach
        these counters (stage.py charges the true usage there when each finishes)."""
        for hold in self._holds.values():
            if hold.plan.team != team:
                continue
            started_ms = hold.started_ms
            for check, entry in rebuilt:
                amount = adopted_amount(check, hold.plan, started_ms)
                if amount > 0:
                    entry.reserved += amount
                    self._adopted.setdefault(hold.id, []).append((entry, amount))

    def _free_adopted(self, hold_id: str) -> None:
        for entry, amount in self._adopted.pop(hold_id, ()):
            entry.reserved -= amount if amount < entry.reserved else entry.reserved

    def settle(self, hold: Hold, actual: Actual | None, now_ms: int | None = None) -> None:
        if not hold.is_checked:
            return
        is_held = self._holds.pop(hold.id, None) is not None
        self._settle(hold, actual, is_held=is_held, adjust_rates=True, now_ms=now_ms)

    def charge_unreserved(
        self,
        team: str,
        subject: str,
        charge_id: str,
        added: tuple[BudgetRule, ...],
        actual: Actual,
        finished_ms: int,
    ) -> None:
        # Here a rebuild is done (is_seeded) or not at the instant of this call, which is
        # when the request finished: a counter rebuilt since its row was stored lacks it.
        counters = self._team(team).budgets
        for rule in added:
            entry = counters.get(rule.key)
            if entry is not None and entry.is_seeded:
                entry.used += rule.actual(actual)

    async def snapshot(self, plan: Plan, now_ms: int) -> Snapshot:
        if now_ms >= self._next_expiry_ms:
            self._sweep(now_ms)
        state = self._team(plan.team)
        budgets = []
        for check in plan.budgets:
            entry = state.budgets.get(check.key)
            seeded = entry is not None and entry.is_seeded
            budgets.append(Counter(entry.used, entry.reserved) if entry and seeded else None)
        rates = [
            gcra.view(self._level(state, rate.key, now_ms, rate.limit), rate.limit)
            for rate in plan.rates
        ]
        conc = tuple(self._in_flight(state, c.key) for c in plan.concurrency)
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
    def _budget(counters: dict[str, _Budget], check: BudgetRule) -> _Budget:
        entry = counters.get(check.key)
        if entry is None:
            entry = counters[check.key] = _Budget(
                0, 0, check.resets_ms + KEEP_AFTER_PERIOD_MS, is_seeded=False
            )
        return entry

    @staticmethod
    def _in_flight(state: _Team, key: str) -> int:
        gauge = state.gauges.get(key)
        return 0 if gauge is None else gauge.count

    @staticmethod
    def _level(state: _Team, key: str, now_ms: int, limit: int) -> int:
        bucket = state.buckets.get(key)
        return 0 if bucket is None else gcra.drained(bucket.stamp_ms, bucket.level, now_ms, limit)

    def _bound_of(self, shape: Shape) -> _Bound:
        bound = self._bound.get(id(shape))
        return bound if bound is not None and bound.shape is shape else self._bind(shape)

    def _bind(self, shape: Shape) -> _Bound:
        """The shape's records, made where missing (a budget not yet rebuilt from the
        ledger is made unseeded: a reservation on it asks for the rebuild first)."""
        state = self._team(shape.team)
        budgets = tuple(
            (self._budget(state.budgets, rule), rule.limit, rule.unit is TOKEN_BUDGET)
            for rule in shape.budgets
        )
        gauges = tuple(
            (state.gauges.get(c.key) or state.gauges.setdefault(c.key, _Gauge()), c.limit)
            for c in shape.concurrency
        )
        # An empty bucket stamped at 0 drains to the same level as a key never seen.
        rates = tuple(
            (
                state.buckets.get(r.key) or state.buckets.setdefault(r.key, _Bucket(0, 0)),
                r.limit,
                r.kind is TOKENS,
            )
            for r in shape.rates
        )
        if len(self._bound) >= BOUND_KEPT:
            self._bound.clear()
        bound = self._bound[id(shape)] = _Bound(shape, budgets, gauges, rates)
        return bound

    def _settle(
        self,
        hold: Hold,
        actual: Actual | None,
        *,
        is_held: bool,
        adjust_rates: bool,
        now_ms: int | None = None,
    ) -> None:
        plan = hold.plan
        shape = plan.shape
        bound = self._bound_of(shape)
        if self._adopted:  # popped: freed once, by the settle or the lease's sweep
            self._free_adopted(hold.id)
        if actual is None:
            used_tokens = used_nanousd = None
        else:
            used_tokens, used_nanousd = actual.tokens, actual.nanousd
        for entry, _, counts_tokens in bound.budgets:
            if counts_tokens:
                reserved, used = plan.tokens, used_tokens
            else:
                reserved, used = plan.nanousd, used_nanousd
            entry.used, entry.reserved = budget.settled(
                entry.used, entry.reserved, reserved, used, is_held=is_held
            )
        if is_held:
            for gauge, _ in bound.gauges:
                gauge.count -= 1
        if not adjust_rates:
            return
        # A lapsed lease leaves its tokens counted; the late settle corrects them once.
        used = 0 if used_tokens is None else used_tokens
        elapsed = None if now_ms is None else now_ms - hold.started_ms
        for bucket, limit, counts_tokens in bound.rates:
            if counts_tokens:
                delta = gcra.settled_delta(plan.tokens, used, elapsed, limit)
                bucket.level = gcra.adjusted(bucket.level, delta)

    def _sweep(self, now_ms: int) -> None:
        """Free the holds whose lease ran out (their request never settled: a bug, a
        task lost). Looks at every unsettled hold: those in flight, a few."""
        lapsed = [hold for hold in self._holds.values() if hold.expires_ms <= now_ms]
        for hold in lapsed:
            del self._holds[hold.id]
            self._settle(hold, None, is_held=True, adjust_rates=False)
        self._next_expiry_ms = min((h.expires_ms for h in self._holds.values()), default=NEVER)
