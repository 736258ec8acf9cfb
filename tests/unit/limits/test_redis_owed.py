"""What a request served unchecked owes its budgets, the bounded list that keeps it until
Redis answers, and how a batch's replies decide what is sent again (redis_calls.py)."""

from __future__ import annotations

import pytest
from redis.exceptions import NoScriptError, ResponseError

from gateway.limits.plan import Actual, Estimate, Plan, build_plan
from gateway.limits.redis_calls import (
    MAY_HAVE_RUN,
    NEVER_SENT,
    OwedCharge,
    OwedCharges,
    abandoned_reserve,
    charge_command,
    excess,
    late_settle,
    owed_charge,
    refused_for_script,
    team_prefix,
)
from gateway.limits.resp import NoScript, RespError
from gateway.policy.compiled import Budget, BudgetPeriod, TeamRules
from gateway.policy.schema import LimitsSpec, PerUserSpec

NOW = 1_700_000_000_000


def plan_of(team: TeamRules) -> Plan:
    return build_plan(team, "alice", Estimate(100, 5_000), NOW)


BUDGETED = TeamRules(
    "t",
    True,
    frozenset(),
    budgets=(Budget(BudgetPeriod.DAY, 10_000, 1.0),),  # tokens, then USD
    per_user=PerUserSpec(tokens_per_day=500),
)
RATES_ONLY = TeamRules("r", True, frozenset(), limits=LimitsSpec(rpm=10, tpm=1000))


def charge(hold_id: str) -> OwedCharge:
    return OwedCharge(hold_id, plan_of(BUDGETED).shape, (1, 2, 3), NOW)


def test_an_unchecked_request_owes_each_budget_in_its_unit() -> None:
    """Tokens to the token budgets, nano-USD to the USD one, stamped when it finished."""
    plan = plan_of(BUDGETED)
    owed = owed_charge("h1", plan, Actual(40, 7_000), NOW + 5)
    assert owed == OwedCharge("h1", plan.shape, (40, 7_000, 40), NOW + 5)


@pytest.mark.parametrize(
    ("team", "actual"),
    [
        (BUDGETED, None),  # no upstream answered: nothing was spent
        (BUDGETED, Actual(0, 0)),  # nothing used
        (RATES_ONLY, Actual(40, 7_000)),  # no budget: rates' windows have passed
    ],
    ids=["no-answer", "nothing-used", "no-budget"],
)
def test_nothing_is_owed(team: TeamRules, actual: Actual | None) -> None:
    assert owed_charge("h1", plan_of(team), actual, NOW) is None


def test_a_charge_is_one_evalsha_on_the_budget_counters() -> None:
    """KEYS the team's holds, their leases and budget counters (one hash slot); ARGV the
    hold id (its mark on each counter), then one string: the instant it finished, no
    reserve given up on (0), the amount per counter."""
    plan = plan_of(BUDGETED)
    owed = owed_charge("h1", plan, Actual(40, 7_000), NOW + 5)
    assert owed is not None
    p = team_prefix("t")
    keys = [p + "holds", p + "exp", *(p + b.key for b in plan.budgets)]
    assert charge_command("sha", owed) == (
        "EVALSHA",
        "sha",
        5,
        *keys,
        "h1",
        f"{NOW + 5} 0 0 40 7000 40",
    )


def test_a_reserve_given_up_on_owes_its_hold_and_no_usage() -> None:
    """Its lease end (until when a late run of it must take nothing), nothing to add."""
    plan = plan_of(BUDGETED)
    owed = abandoned_reserve("h1", plan, NOW + 500, NOW + 90_000)
    assert owed == OwedCharge("h1", plan.shape, (0, 0, 0), NOW + 500, NOW + 90_000)
    assert charge_command("sha", owed)[-1] == f"{NOW + 500} {NOW + 90_000} 0 0 0 0"


def test_a_reserve_of_rates_alone_given_up_on_owes_nothing() -> None:
    """Its hold holds nothing past the call; its rate levels count the request."""
    assert abandoned_reserve("h1", plan_of(RATES_ONLY), NOW + 500, NOW + 90_000) is None


def test_a_settle_redis_did_not_take_owes_its_hold_and_its_usage() -> None:
    """Its usage per budget (nothing when no upstream answered: the hold is still freed),
    whether Redis may have run it, and its kind in the charge's numbers."""
    plan = plan_of(BUDGETED)
    owed = late_settle("h1", plan, Actual(40, 7_000), NOW + 5, may_have_run=False)
    assert owed == OwedCharge("h1", plan.shape, (40, 7_000, 40), NOW + 5, 0, NEVER_SENT)
    assert charge_command("sha", owed)[-1] == f"{NOW + 5} 0 {NEVER_SENT} 40 7000 40"
    released = late_settle("h2", plan, None, NOW + 5, may_have_run=True)
    assert released == OwedCharge("h2", plan.shape, (0, 0, 0), NOW + 5, 0, MAY_HAVE_RUN)


def test_a_settle_of_rates_alone_is_not_owed() -> None:
    """Its hold holds nothing a lease would not free as well."""
    assert late_settle("h1", plan_of(RATES_ONLY), Actual(1, 1), NOW, may_have_run=False) is None


@pytest.mark.parametrize(
    ("owed", "kept", "dropped"), [(0, 3, 0), (3, 3, 0), (4, 3, 1), (10, 3, 7), (1, 0, 1)]
)
def test_excess_is_what_is_owed_past_the_bound(owed: int, kept: int, dropped: int) -> None:
    assert excess(owed, kept) == dropped


def test_past_the_bound_the_oldest_charges_go_and_are_counted() -> None:
    owed = OwedCharges(kept=3)
    assert [owed.owe(charge(f"h{i}")) for i in range(5)] == [0, 0, 0, 1, 1]
    assert [c.hold_id for c in owed.take(10)] == ["h2", "h3", "h4"]
    assert len(owed) == 0


def test_charges_taken_and_not_landed_are_owed_again_as_the_oldest() -> None:
    """Sent while Redis was away: back in front, in order; the bound drops them first."""
    owed = OwedCharges(kept=3)
    for i in range(3):
        owed.owe(charge(f"h{i}"))
    taken = owed.take(2)
    assert [c.hold_id for c in taken] == ["h0", "h1"]
    owed.owe(charge("h3"))
    assert owed.owe_again(taken) == 1  # four owed, three kept: the oldest went
    assert [c.hold_id for c in owed.take(10)] == ["h1", "h2", "h3"]


def test_clear_says_how_many_were_owed() -> None:
    owed = OwedCharges(kept=10)
    owed.owe(charge("a"))
    owed.owe(charge("b"))
    assert owed.clear() == 2 and len(owed) == 0 and owed.take(1) == []


def test_replies_refused_for_an_unknown_script_are_sent_again_other_errors_are_not() -> None:
    """NOSCRIPT (from either client): none of it ran, send again; another error would come
    again; an answer landed."""
    batch = ["ok", "noscript-fast", "noscript-py", "error-fast", "error-py"]
    replies = [
        1,
        NoScript("NOSCRIPT"),
        NoScriptError("NOSCRIPT"),
        RespError("ERR x"),
        ResponseError("ERR y"),
    ]
    again, errors = refused_for_script(batch, replies)
    assert again == ["noscript-fast", "noscript-py"]
    assert [str(e) for e in errors] == ["ERR x", "ERR y"]
    assert refused_for_script(batch, [1] * 5) == ([], [])
