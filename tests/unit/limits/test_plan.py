"""The plan: which counters a request reserves on, keyed so edits never move usage."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.limits.plan import (
    Estimate,
    Scope,
    Unit,
    adopted_amount,
    build_plan,
    key_owner,
    shape_of,
)
from gateway.policy.compiled import Budget, BudgetPeriod, TeamRules
from gateway.policy.schema import LimitsSpec, PerUserSpec
from gateway.usage.nano import usd_to_nano

NOW = 1_750_000_000_000


def rules(*budgets: Budget, **kwargs: object) -> TeamRules:
    return TeamRules("search", False, frozenset({"m"}), budgets=budgets, **kwargs)  # type: ignore[arg-type]


def test_editing_a_budget_keeps_its_counter() -> None:
    """Raising a monthly budget from 100 to 500 reads the same counter: recorded usage stays."""
    before = build_plan(rules(Budget(BudgetPeriod.MONTH, 100, None)), "u", Estimate(1, 1), NOW)
    after = build_plan(rules(Budget(BudgetPeriod.MONTH, 500, None)), "u", Estimate(1, 1), NOW)
    assert before.budgets[0].key == after.budgets[0].key
    assert (before.budgets[0].limit, after.budgets[0].limit) == (100, 500)


def test_every_budget_limit_and_user_rule_becomes_a_check() -> None:
    plan = build_plan(
        rules(
            Budget(BudgetPeriod.MONTH, None, 2000.0),
            Budget(BudgetPeriod.DAY, 2_000_000, None),
            limits=LimitsSpec(rpm=600, tpm=200_000, concurrency=20),
            per_user=PerUserSpec(rpm=60, tokens_per_day=500_000, concurrency=2),
        ),
        "alice@example.com",
        Estimate(1200, 3_000_000),
        NOW,
    )
    assert [(b.scope, b.unit, b.period, b.limit, plan.amount(b)) for b in plan.budgets] == [
        (Scope.TEAM, Unit.USD, BudgetPeriod.MONTH, 2000 * 10**9, 3_000_000),
        (Scope.TEAM, Unit.TOKENS, BudgetPeriod.DAY, 2_000_000, 1200),
        (Scope.USER, Unit.TOKENS, BudgetPeriod.DAY, 500_000, 1200),
    ]
    assert [(r.scope, r.kind, r.limit, plan.amount(r)) for r in plan.rates] == [
        (Scope.TEAM, "requests", 600, 1),
        (Scope.TEAM, "tokens", 200_000, 1200),
        (Scope.USER, "requests", 60, 1),
    ]
    assert [(c.scope, c.limit) for c in plan.concurrency] == [(Scope.TEAM, 20), (Scope.USER, 2)]
    assert all(" " not in k and "@" not in k.split(":", 2)[-1] for k in _keys(plan))


def _keys(plan: object) -> list[str]:
    return [c.key for group in ("budgets", "rates", "concurrency") for c in getattr(plan, group)]


def test_a_team_without_rules_has_an_empty_plan() -> None:
    assert build_plan(rules(), "u", Estimate(1, 1), NOW).is_empty


def test_usd_converts_exactly() -> None:
    assert usd_to_nano(0.1) == 100_000_000 and usd_to_nano(2000) == 2_000_000_000_000


def test_each_user_budget_is_a_check_on_that_users_own_counter() -> None:
    """A user's week-tokens and month-USD budgets are checks of their own, keyed by the
    subject: two users of one team never share them; the team's stay shared."""
    team = rules(
        Budget(BudgetPeriod.MONTH, None, 100.0),
        per_user=PerUserSpec(
            tokens_per_day=50,
            budgets=[{"period": "week", "tokens": 300}, {"period": "month", "usd": 1.5}],
        ),
    )
    alice = build_plan(team, "alice", Estimate(40, 7_000), NOW)
    bob = build_plan(team, "bob", Estimate(40, 7_000), NOW)
    assert [(b.scope, b.unit, b.period, b.limit, alice.amount(b)) for b in alice.budgets] == [
        (Scope.TEAM, Unit.USD, BudgetPeriod.MONTH, 100 * 10**9, 7_000),
        (Scope.USER, Unit.TOKENS, BudgetPeriod.DAY, 50, 40),
        (Scope.USER, Unit.TOKENS, BudgetPeriod.WEEK, 300, 40),
        (Scope.USER, Unit.USD, BudgetPeriod.MONTH, 1_500_000_000, 7_000),
    ]
    shared = [a.key == b.key for a, b in zip(alice.budgets, bob.budgets, strict=True)]
    assert shared == [True, False, False, False]
    assert alice.budgets[2].key.startswith("b:u:alice:tokens:week:")
    week = alice.budgets[2]
    assert week.resets_ms - week.starts_ms == 7 * 86_400_000


def test_a_counter_rebuilt_mid_flight_adopts_the_holds_its_budget_applies_to() -> None:
    """A day budget moved to a week: the new counter takes on the estimate of each hold
    in flight (a user's budget, that user's only); none where the hold reserved already,
    and none for a hold whose request started before the new period."""
    day = rules(Budget(BudgetPeriod.DAY, 100, None), per_user=PerUserSpec(tokens_per_day=80))
    week = rules(
        Budget(BudgetPeriod.WEEK, 100, None),
        per_user=PerUserSpec(budgets=[{"period": "week", "usd": 1.0}]),
    )
    held = build_plan(day, "alice", Estimate(30, 4_000), NOW)
    team_week, alice_week = build_plan(week, "alice", Estimate(1, 1), NOW).budgets
    bob_week = build_plan(week, "bob", Estimate(1, 1), NOW).budgets[1]
    assert adopted_amount(team_week, held, NOW) == 30
    assert adopted_amount(alice_week, held, NOW) == 4_000  # in the rule's unit: nano-USD
    assert adopted_amount(bob_week, held, NOW) == 0
    assert adopted_amount(held.budgets[0], held, NOW) == 0  # reserved on it already
    assert adopted_amount(team_week, held, team_week.starts_ms - 1) == 0


def test_a_budget_key_names_its_owner() -> None:
    team_rule, user_rule = build_plan(
        rules(Budget(BudgetPeriod.DAY, 100, None), per_user=PerUserSpec(tokens_per_day=80)),
        "a b:c%d",
        Estimate(1, 1),
        NOW,
    ).budgets
    assert key_owner(team_rule.key) == "t"
    assert key_owner(user_rule.key) == "u:a%20b%3Ac%25d"


_periods = st.sampled_from(list(BudgetPeriod))
_zones = st.sampled_from(["UTC", "Europe/Berlin", "Pacific/Kiritimati", "America/St_Johns"])
_budgets = st.lists(
    st.builds(Budget, _periods, st.integers(1, 10**6), st.just(None))
    | st.builds(Budget, _periods, st.just(None), st.floats(0.01, 100.0)),
    max_size=3,
)
_per_user = st.one_of(
    st.none(), st.builds(PerUserSpec, tokens_per_day=st.one_of(st.none(), st.integers(1, 99)))
)


@given(
    before=st.tuples(_budgets, _per_user, _zones),
    after=st.tuples(_budgets, _per_user, _zones),
    subjects=st.tuples(st.sampled_from(["alice", "b b"]), st.sampled_from(["alice", "b b"])),
    started=st.integers(NOW - 10**10, NOW + 10**10),
    later=st.integers(0, 40 * 86_400_000),
)
def test_a_hold_adopts_exactly_on_the_new_counters_that_would_count_it(
    before, after, subjects, started, later
) -> None:
    """Any policy edit mid-flight (budgets added, removed, periods and timezone moved): a
    hold reserved under the old policy adopts, on each counter of the new one, its
    estimate in that counter's unit where the counter did not have it already and would
    count its request (its period holds the start; a user's budget: the same user), and
    nothing elsewhere."""
    held_by, asker = subjects
    old = rules(*before[0], per_user=before[1])
    new = rules(*after[0], per_user=after[1])
    plan = build_plan(old, held_by, Estimate(17, 23_000), started, timezone=before[2])
    reserved = {rule.key for rule in plan.budgets}
    for rule in shape_of(new, asker, started + later, after[2]).budgets:
        counts_it = rule.starts_ms <= started < rule.resets_ms and (
            rule.scope is Scope.TEAM or held_by == asker
        )
        expected = plan.amount(rule) if counts_it and rule.key not in reserved else 0
        assert adopted_amount(rule, plan, started) == expected
        assert expected in (0, 17, 23_000)
