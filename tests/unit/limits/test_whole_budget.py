"""larger_than_a_whole_budget: the refusal no counter could change (no store needed)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.limits.budget import Verdict
from gateway.limits.plan import Estimate, build_plan
from gateway.limits.service import larger_than_a_whole_budget
from gateway.policy.compiled import Budget, BudgetPeriod, PerUserSpec, TeamRules

NOW = 1_780_000_000_000
NANO = 10**9  # nano-USD per USD


def team(day_tokens: int, month_usd: int, user_tokens: int) -> TeamRules:
    return TeamRules(
        "t",
        True,
        frozenset(),
        budgets=(
            Budget(BudgetPeriod.DAY, day_tokens, None),
            Budget(BudgetPeriod.MONTH, None, month_usd),
        ),
        per_user=PerUserSpec(tokens_per_day=user_tokens),
    )


limits = st.integers(min_value=1, max_value=10**6)


@given(limits, limits, limits, st.integers(0, 2 * 10**6), st.integers(0, 2 * 10**6))
def test_refused_exactly_when_some_budget_is_smaller_than_the_estimate_alone(
    day: int, usd: int, user: int, tokens: int, dollars: int
) -> None:
    plan = build_plan(team(day, usd, user), "u", Estimate(tokens, dollars * NANO), NOW)
    refusal = larger_than_a_whole_budget(plan)
    larger = [rule for rule in plan.budgets if plan.amount(rule) > rule.limit]
    if not larger:
        assert refusal is None
        return
    assert refusal is not None
    assert refusal.check == larger[0]  # the first in the plan's order, as the store's
    assert refusal.amount == plan.amount(larger[0])
    assert refusal.verdict is Verdict.TOO_LARGE


def test_an_estimate_equal_to_a_whole_budget_fits() -> None:
    plan = build_plan(team(100, 5, 1000), "u", Estimate(100, 5 * NANO), NOW)
    assert larger_than_a_whole_budget(plan) is None
