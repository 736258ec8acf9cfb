"""The plan: which counters a request reserves on, keyed so edits never move usage."""

from __future__ import annotations

from gateway.limits.plan import Estimate, Scope, Unit, build_plan, usd_to_nano
from gateway.policy.compiled import Budget, BudgetPeriod, TeamRules
from gateway.policy.schema import LimitsSpec, PerUserSpec

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
