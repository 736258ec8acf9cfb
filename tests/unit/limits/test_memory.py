"""The in-process backend: all-or-nothing reservations, holds that expire, exact release."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.limits import budget, gcra
from gateway.limits.answers import BudgetRefusal, ConcurrencyRefusal, RateRefusal, tightest
from gateway.limits.backend import Hold, NeedsSeed, Snapshot
from gateway.limits.budget import Counter, Verdict
from gateway.limits.gcra import Bucket
from gateway.limits.memory import MemoryBackend
from gateway.limits.plan import Actual, Estimate, Plan, RateKind, build_plan
from gateway.policy.compiled import Budget, BudgetPeriod, TeamRules
from gateway.policy.schema import LimitsSpec, PerUserSpec

NOW = 1_750_000_000_000


def team(**kwargs: object) -> TeamRules:
    return TeamRules("t", True, frozenset(), **kwargs)  # type: ignore[arg-type]


def plan_for(rules: TeamRules, tokens: int, now: int = NOW, subject: str = "u") -> Plan:
    return build_plan(rules, subject, Estimate(tokens, tokens * 10), now, deadline_s=10)


def seeded(backend: MemoryBackend, plan: Plan, used: int = 0) -> None:
    asyncio.run(backend.seed(plan.team, tuple((c, used) for c in plan.budgets)))


def test_a_new_counter_asks_for_its_rebuild_first() -> None:
    backend = MemoryBackend()
    plan = plan_for(team(budgets=(Budget(BudgetPeriod.DAY, 100, None),)), 10)
    assert isinstance(backend.reserve_now(plan, "a", NOW), NeedsSeed)
    seeded(backend, plan, used=95)
    refusal = backend.reserve_now(plan, "a", NOW)
    assert isinstance(refusal, BudgetRefusal) and refusal.counter.used == 95


def test_one_refused_check_changes_nothing() -> None:
    """Budget fits, concurrency does not: the budget is not reserved either."""
    rules = team(budgets=(Budget(BudgetPeriod.DAY, 1000, None),), limits=LimitsSpec(concurrency=1))
    backend = MemoryBackend()
    plan = plan_for(rules, 10)
    seeded(backend, plan)
    assert isinstance(backend.reserve_now(plan, "a", NOW), Hold)
    assert isinstance(backend.reserve_now(plan, "b", NOW), ConcurrencyRefusal)
    snap = asyncio.run(backend.snapshot(plan, NOW))
    assert snap.budgets[0] is not None and snap.budgets[0].reserved == 10
    assert snap.concurrency == (1,)


def test_a_hold_nobody_settles_expires_at_its_lease_end() -> None:
    """A replica that died mid-request: its budget and concurrency free themselves."""
    rules = team(budgets=(Budget(BudgetPeriod.DAY, 100, None),), limits=LimitsSpec(concurrency=1))
    backend = MemoryBackend()
    plan = plan_for(rules, 100)
    seeded(backend, plan)
    hold = backend.reserve_now(plan, "a", NOW)
    assert isinstance(hold, Hold)
    assert not isinstance(backend.reserve_now(plan, "b", hold.expires_ms - 1), Hold)
    assert isinstance(backend.reserve_now(plan, "c", hold.expires_ms), Hold)
    backend.settle(hold, Actual(40, 400))  # late: charged, frees nothing
    snap = asyncio.run(backend.snapshot(plan, hold.expires_ms + 5))
    assert snap.budgets[0] is not None
    assert (snap.budgets[0].used, snap.budgets[0].reserved) == (40, 100)
    assert snap.concurrency == (1,)


def test_the_longest_rate_wait_is_the_one_reported() -> None:
    rules = team(limits=LimitsSpec(rpm=60, tpm=100), per_user=PerUserSpec(rpm=1))
    backend = MemoryBackend()
    plan = plan_for(rules, 50)
    assert isinstance(backend.reserve_now(plan, "a", NOW), Hold)
    refusal = backend.reserve_now(plan, "b", NOW)
    assert isinstance(refusal, RateRefusal)
    assert refusal.check.kind == "requests" and refusal.retry_after_ms == 60_000


def test_tokens_per_minute_settle_to_the_true_usage() -> None:
    """tpm 100: a 100-token reservation that used 10 leaves room for 90 more at once."""
    rules = team(limits=LimitsSpec(tpm=100))
    backend = MemoryBackend()
    hold = backend.reserve_now(plan_for(rules, 100), "a", NOW)
    assert isinstance(hold, Hold) and hold.tokens is not None and hold.tokens.remaining == 0
    backend.settle(hold, Actual(10, 0))
    assert isinstance(backend.reserve_now(plan_for(rules, 90), "b", NOW), Hold)
    assert isinstance(backend.reserve_now(plan_for(rules, 1), "c", NOW), RateRefusal)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(1, 60), st.sampled_from(["u1", "u2"])),
        st.tuples(st.just("settle"), st.integers(0, 100), st.booleans()),
        st.tuples(st.just("wait"), st.integers(1, 80_000), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=ops)
def test_holds_always_end_released_and_counters_stay_in_bounds(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    """Any interleaving of reserves, settles (true usage <= estimate, or none) and time:
    used never passes a budget, nothing goes negative, concurrency never passes its
    limit, and once every hold is settled or expired nothing is held."""
    rules = team(
        budgets=(Budget(BudgetPeriod.MONTH, 300, None), Budget(BudgetPeriod.MONTH, None, 0.000002)),
        limits=LimitsSpec(concurrency=3, tpm=200),
        per_user=PerUserSpec(tokens_per_day=150, concurrency=2),
    )
    backend = MemoryBackend()
    now, holds, n = NOW, [], 0
    for op, a, b in ops:
        if op == "reserve":
            n += 1
            plan = plan_for(rules, a, now, subject=b)
            result = backend.reserve_now(plan, str(n), now)
            if isinstance(result, NeedsSeed):
                seeded(backend, plan)
                result = backend.reserve_now(plan, str(n), now)
            if isinstance(result, Hold):
                holds.append(result)
        elif op == "settle" and holds:
            hold = holds.pop(0)
            estimate = hold.plan.amount(hold.plan.budgets[0])
            actual = Actual(estimate * a // 100, estimate * 10 * a // 100) if b else None
            backend.settle(hold, actual)
        elif op == "wait":
            now += a
        for plan in {h.plan for h in holds} | {plan_for(rules, 1, now, s) for s in ("u1", "u2")}:
            snap = asyncio.run(backend.snapshot(plan, now))
            for check, counter in zip(plan.budgets, snap.budgets, strict=True):
                if counter is not None:
                    assert counter.used >= 0 and counter.reserved >= 0
                    assert counter.used <= check.limit
            for conc, count in zip(plan.concurrency, snap.concurrency, strict=True):
                assert count <= conc.limit
    for hold in holds:
        backend.settle(hold, None)
    final = plan_for(rules, 1, now, "u1")
    snap = asyncio.run(backend.snapshot(final, now))
    assert all(c is None or c.reserved == 0 for c in snap.budgets)
    assert snap.concurrency == (0, 0)


def test_hold_ids_are_unique_and_differ_between_processes() -> None:
    import os

    from gateway.limits import service

    ids = {service.new_hold_id() for _ in range(1000)}
    assert len(ids) == 1000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new process prefix
        os.write(write, service.new_hold_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    assert child[:16] != service.new_hold_id()[:16]


class CoreReference:
    """The rules as the pure cores state them, one call per check on plain dicts keyed by
    counter (budget.py, gcra.py, answers.tightest), every lapsed hold swept at once:
    what the backend, with its records bound per shape, its per-kind loops and its lazy
    sweep, must equal."""

    def __init__(self) -> None:
        self.budgets: dict[str, Counter] = {}
        self.buckets: dict[str, Bucket] = {}
        self.gauges: dict[str, int] = {}
        self.holds: dict[str, tuple[Plan, int]] = {}

    def sweep(self, now: int) -> None:
        for hold_id, (plan, expires) in list(self.holds.items()):
            if expires <= now:
                del self.holds[hold_id]
                self._release(plan, None, is_held=True, adjust_rates=False)

    def reserve(self, plan: Plan, hold_id: str, now: int) -> object:
        """The hold's (requests, tokens) views and lease end, or the refusal's type."""
        self.sweep(now)
        for rule in plan.budgets:
            counter = self.budgets.setdefault(rule.key, Counter())
            if budget.check(counter, rule.limit, plan.amount(rule)) is not Verdict.OK:
                return BudgetRefusal
        for conc in plan.concurrency:
            if self.gauges.get(conc.key, 0) >= conc.limit:
                return ConcurrencyRefusal
        states = [
            gcra.decide(self.buckets.get(r.key, Bucket()), now, r.limit, plan.amount(r))
            for r in plan.rates
        ]
        if not all(state.is_allowed for state in states):
            return RateRefusal
        for rule in plan.budgets:
            self.budgets[rule.key] = budget.reserve(self.budgets[rule.key], plan.amount(rule))
        for conc in plan.concurrency:
            self.gauges[conc.key] = self.gauges.get(conc.key, 0) + 1
        for rate, state in zip(plan.rates, states, strict=True):
            self.buckets[rate.key] = state.bucket
        views = tightest(
            (r.kind, r.limit, s.remaining, s.reset_ms)
            for r, s in zip(plan.rates, states, strict=True)
        )
        self.holds[hold_id] = (plan, now + plan.lease_ms)
        return views, now + plan.lease_ms

    def settle(self, hold_id: str, plan: Plan, actual: Actual | None) -> None:
        is_held = self.holds.pop(hold_id, None) is not None
        self._release(plan, actual, is_held=is_held, adjust_rates=True)

    def _release(
        self, plan: Plan, actual: Actual | None, *, is_held: bool, adjust_rates: bool
    ) -> None:
        for rule in plan.budgets:
            used = None if actual is None else rule.actual(actual)
            self.budgets[rule.key] = budget.settle(
                self.budgets[rule.key], plan.amount(rule), used, is_held=is_held
            )
        if is_held:
            for conc in plan.concurrency:
                self.gauges[conc.key] -= 1
        if adjust_rates:
            delta = (0 if actual is None else actual.tokens) - plan.tokens
            for rate in plan.rates:
                if rate.kind is RateKind.TOKENS:
                    self.buckets[rate.key] = gcra.adjust(self.buckets[rate.key], delta)

    def snapshot(self, plan: Plan, now: int) -> Snapshot:
        self.sweep(now)
        return Snapshot(
            tuple(self.budgets.get(rule.key, Counter()) for rule in plan.budgets),
            tuple(
                gcra.state_of(self.buckets.get(r.key, Bucket()), now, r.limit) for r in plan.rates
            ),
            tuple(self.gauges.get(c.key, 0) for c in plan.concurrency),
        )


reference_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("reserve"),
            st.integers(0, 9),  # tokens
            st.integers(0, 60),  # nano-USD
            st.sampled_from(["u1", "u2"]),
        ),
        st.tuples(st.just("settle"), st.integers(0, 12), st.integers(0, 120), st.booleans()),
        st.tuples(st.just("wait"), st.integers(1, 40_000), st.none(), st.none()),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(ops=reference_ops)
def test_every_decision_and_counter_equals_the_pure_cores(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    """Over any interleaving of reserves, settles (more or less than reserved, or none)
    and time, each decision, each hold's x-ratelimit views and lease, and every counter
    equal the cores' (CoreReference). Limits are small, so every kind of check refuses
    often and budgets fill to the unit."""
    rules = team(  # limits a few requests reach exactly: every edge is met often
        budgets=(Budget(BudgetPeriod.MONTH, 16, None), Budget(BudgetPeriod.DAY, None, 0.00000005)),
        limits=LimitsSpec(rpm=6, tpm=20, concurrency=3),
        per_user=PerUserSpec(rpm=3, tokens_per_day=8, concurrency=2),
    )
    backend, reference = MemoryBackend(), CoreReference()
    now, holds, n = NOW, [], 0
    for op, a, b, c in ops:
        if op == "reserve":
            n += 1
            plan = build_plan(rules, c, Estimate(a, b), now, deadline_s=30)
            found = backend.reserve_now(plan, str(n), now)
            if isinstance(found, NeedsSeed):  # a counter's first use: rebuilt as empty
                asyncio.run(backend.seed(plan.team, tuple((r, 0) for r in found.checks)))
                found = backend.reserve_now(plan, str(n), now)
            expected = reference.reserve(plan, str(n), now)
            if isinstance(found, Hold):
                assert ((found.requests, found.tokens), found.expires_ms) == expected
                holds.append(found)
            else:
                assert type(found) is expected
        elif op == "settle" and holds:
            hold = holds.pop(0)
            actual = Actual(a, b) if c else None
            backend.settle(hold, actual)
            reference.settle(hold.id, hold.plan, actual)
        elif op == "wait":
            now += a
        for subject in ("u1", "u2"):
            plan = build_plan(rules, subject, Estimate(1, 1), now, deadline_s=30)
            asyncio.run(backend.seed(plan.team, tuple((r, 0) for r in plan.budgets)))  # new periods
            assert asyncio.run(backend.snapshot(plan, now)) == reference.snapshot(plan, now)


def test_a_budget_used_up_exactly_refuses_even_a_request_that_costs_nothing() -> None:
    """A USD budget spent to the nano-dollar refuses a request priced at 0 (a model
    without prices), as budget.verdict says: used >= limit is exhausted."""
    rules = team(budgets=(Budget(BudgetPeriod.DAY, None, 0.00000005),))  # 50 nano-USD
    backend = MemoryBackend()
    spend = build_plan(rules, "u", Estimate(1, 50), NOW)
    seeded(backend, spend)
    hold = backend.reserve_now(spend, "a", NOW)
    assert isinstance(hold, Hold)
    backend.settle(hold, Actual(1, 50))
    free = build_plan(rules, "u", Estimate(1, 0), NOW)
    refusal = backend.reserve_now(free, "b", NOW)
    assert isinstance(refusal, BudgetRefusal) and refusal.verdict is Verdict.EXHAUSTED


def test_a_changed_rate_limit_keeps_what_the_minute_already_used() -> None:
    """Editing rpm or tpm is not a fresh bucket: tightened, a team that used the new limit
    already is refused at once; loosened, it gets the difference, not a whole new minute."""
    backend = MemoryBackend()
    five = plan_for(team(limits=LimitsSpec(rpm=5, tpm=1000)), 100)
    for n in range(5):
        assert isinstance(backend.reserve_now(five, f"a{n}", NOW), Hold)
    three = plan_for(team(limits=LimitsSpec(rpm=3, tpm=1000)), 100)
    refused = backend.reserve_now(three, "b", NOW)
    assert isinstance(refused, RateRefusal) and refused.check.kind is RateKind.REQUESTS
    eight = plan_for(team(limits=LimitsSpec(rpm=8, tpm=500)), 100)
    assert isinstance(backend.reserve_now(eight, "c", NOW), RateRefusal)  # 500 tokens taken
    eight = plan_for(team(limits=LimitsSpec(rpm=8, tpm=1000)), 100)
    for n in range(3):
        assert isinstance(backend.reserve_now(eight, f"d{n}", NOW), Hold)
    assert isinstance(backend.reserve_now(eight, "e", NOW), RateRefusal)


def test_a_late_refund_leaves_other_requests_tokens_in_the_tpm_bucket() -> None:
    """tpm 3,000: A reserves 2,608 and answers 15 s later with 15 tokens; B took 1,010 at
    14.5 s. Settled at 15 s, A gives back only what is left of its reservation, so C's
    2,708 at 15.3 s waits (B's tokens are still in the bucket). Before, A's whole refund
    emptied the bucket and C passed: 3,720 tokens within a second."""
    rules = team(limits=LimitsSpec(tpm=3000))
    backend = MemoryBackend()
    first = backend.reserve_now(plan_for(rules, 2608), "a", NOW)
    assert isinstance(first, Hold)
    assert isinstance(backend.reserve_now(plan_for(rules, 1010), "b", NOW + 14_500), Hold)
    backend.settle(first, Actual(15, 150), NOW + 15_000)
    refused = backend.reserve_now(plan_for(rules, 2708), "c", NOW + 15_300)
    assert isinstance(refused, RateRefusal) and refused.retry_after_ms > 10_000
    # Without the time of the settle (a caller that cannot tell), the refund is whole.
    other = MemoryBackend()
    first = other.reserve_now(plan_for(rules, 2608), "a", NOW)
    assert isinstance(first, Hold)
    assert isinstance(other.reserve_now(plan_for(rules, 1010), "b", NOW + 14_500), Hold)
    other.settle(first, Actual(15, 150))
    assert isinstance(other.reserve_now(plan_for(rules, 2708), "c", NOW + 15_300), Hold)
