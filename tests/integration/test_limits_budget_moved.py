"""A budget moved while requests are in flight (its period or the policy's timezone
changed, so it counts on a new counter): the new counter adopts their reservations.

SPEC §4: concurrent requests never spend past a budget by more than one request's
estimate error. The new counter is rebuilt from the ledger, which holds only finished
requests: without the holds in flight it would admit as if nothing were, and their
true usage, charged when they finish, would overrun it by their whole estimates.

Both backends, decision by decision: in process, and the shared test Redis (a team
name of this run's own). The stage's part (charging the finished request's usage to
the budgets it did not reserve on) is called as stage.py calls it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest

from gateway.limits.answers import BudgetRefusal
from gateway.limits.backend import Hold, LimitsBackend, NeedsSeed
from gateway.limits.budget import Counter, Verdict
from gateway.limits.memory import MemoryBackend
from gateway.limits.plan import Actual, Estimate, Plan, Scope, build_plan, shape_of
from gateway.limits.redis_backend import RedisBackend
from gateway.policy.compiled import Budget, BudgetPeriod, TeamRules
from gateway.policy.schema import PerUserSpec

ESTIMATE = 28
LEDGER_TEAM_USED = 10  # what the team's finished requests used, as the rebuild reads it


@pytest.fixture(params=["in process", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[LimitsBackend]:
    if request.param == "in process":
        yield MemoryBackend()
        return
    remote = RedisBackend.from_url(request.getfixturevalue("redis_url"))
    try:
        yield remote
    finally:
        await remote.close()


async def landed(backend: LimitsBackend) -> None:
    """Wait for Redis to take the settles and charges sent (in process: done already)."""
    if isinstance(backend, RedisBackend):
        await backend.flush()


def day_rules(name: str) -> TeamRules:
    return TeamRules(
        name,
        True,
        frozenset(),
        budgets=(Budget(BudgetPeriod.DAY, 100, None),),
        per_user=PerUserSpec(tokens_per_day=60),
    )


def week_rules(name: str) -> TeamRules:
    return TeamRules(
        name,
        True,
        frozenset(),
        budgets=(Budget(BudgetPeriod.WEEK, 100, None),),
        per_user=PerUserSpec(budgets=[{"period": "week", "tokens": 60}]),
    )


async def reserve(backend: LimitsBackend, plan: Plan, hold_id: str, now: int) -> object:
    """The service's loop: a counter not yet rebuilt is seeded (the team's ledger sum,
    nothing for a user), then the reserve is tried again."""
    decision = await backend.try_reserve(plan, hold_id, now)
    if isinstance(decision, NeedsSeed):
        seeds = tuple(
            (rule, LEDGER_TEAM_USED if rule.scope is Scope.TEAM else 0) for rule in decision.checks
        )
        await backend.seed(plan.team, seeds)
        decision = await backend.try_reserve(plan, hold_id, now)
    return decision


async def counters(backend: LimitsBackend, plan: Plan, now: int) -> list[Counter | None]:
    return list((await backend.snapshot(plan, now)).budgets)


async def finish(
    backend: LimitsBackend,
    hold: Hold,
    actual: Actual | None,
    rules: TeamRules,
    timezone: str,
) -> None:
    """A request ends: its hold settled, and (stage.py) its usage charged to the
    budgets of the policy now that it did not reserve on."""
    backend.settle(hold, actual)
    if actual is not None:
        started = hold.expires_ms - hold.plan.lease_ms
        reserved = {rule.key for rule in hold.plan.budgets}
        shape = shape_of(rules, hold.plan.subject, started, timezone)
        added = tuple(rule for rule in shape.budgets if rule.key not in reserved)
        finished = int(time.time() * 1000) + 1_000  # after the rebuild's stamp
        backend.charge_unreserved(rules.name, hold.plan.subject, hold.id, added, actual, finished)
    await landed(backend)


@pytest.mark.parametrize("edit", ["period", "timezone"])
async def test_a_moved_budget_counts_the_requests_in_flight_until_each_ends(
    backend: LimitsBackend, edit: str
) -> None:
    """Three requests in flight (two of alice's, one of bob's) when the day budget moves
    to a week, or to Berlin's day: the new counters show their estimates reserved at
    once, a request that would overrun is refused, and as they end (answered, no answer,
    a lease that lapsed and a late answer) reserved returns to 0 and used is the
    ledger's sum plus their true usage, each counted once."""
    name = f"moved-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    old = day_rules(name)
    new, zone = (week_rules(name), "UTC") if edit == "period" else (old, "Europe/Berlin")

    def plan(rules: TeamRules, subject: str, timezone: str) -> Plan:
        return build_plan(
            rules, subject, Estimate(ESTIMATE, 0), now, timezone=timezone, deadline_s=10
        )

    holds = []
    for hold_id, subject in (("a1", "alice"), ("a2", "alice"), ("b1", "bob")):
        hold = await reserve(backend, plan(old, subject, "UTC"), hold_id, now)
        assert isinstance(hold, Hold)
        holds.append(hold)
    a1, a2, b1 = holds
    alice, bob = plan(new, "alice", zone), plan(new, "bob", zone)
    assert {r.key for r in alice.budgets}.isdisjoint(r.key for r in a1.plan.budgets)

    refused = await reserve(backend, alice, "a3", now)
    assert isinstance(refused, BudgetRefusal) and refused.verdict is Verdict.EXHAUSTED
    assert refused.counter == Counter(LEDGER_TEAM_USED, 3 * ESTIMATE)  # 10 + 84 + 28 > 100
    assert await counters(backend, alice, now) == [
        Counter(LEDGER_TEAM_USED, 3 * ESTIMATE),
        Counter(0, 2 * ESTIMATE),
    ]
    bob_hold = await reserve(backend, bob, "b2", now)  # bob's own counter: 28 adopted
    assert isinstance(bob_hold, BudgetRefusal)  # but the team's: 10 + 84 + 28 > 100
    assert await counters(backend, bob, now) == [
        Counter(LEDGER_TEAM_USED, 3 * ESTIMATE),
        Counter(0, ESTIMATE),
    ]

    await finish(backend, a1, Actual(20, 0), new, zone)  # answered
    await finish(backend, b1, None, new, zone)  # no upstream answered: released
    assert await counters(backend, alice, now) == [
        Counter(LEDGER_TEAM_USED + 20, ESTIMATE),
        Counter(20, ESTIMATE),
    ]
    lapsed = a2.expires_ms + 1  # a2's replica went quiet: its lease ends, it frees itself
    assert await counters(backend, alice, lapsed) == [
        Counter(LEDGER_TEAM_USED + 20, 0),
        Counter(20, 0),
    ]
    await finish(backend, a2, Actual(25, 0), new, zone)  # its answer comes after all
    assert await counters(backend, alice, lapsed) == [
        Counter(LEDGER_TEAM_USED + 45, 0),
        Counter(45, 0),
    ]
    assert await counters(backend, bob, lapsed) == [
        Counter(LEDGER_TEAM_USED + 45, 0),
        Counter(0, 0),
    ]
    assert isinstance(await reserve(backend, bob, "b3", now), Hold)  # 55 + 28 fits: room again
