"""A team's `per_user.budgets`: each user's budgets of any period and unit, shaped and
checked like the team's own; `tokens_per_day: N` is `{period: day, tokens: N}`."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.policy.compiled import Budget, BudgetPeriod, user_budgets
from gateway.policy.errors import PolicyInvalid
from gateway.policy.schema import PerUserSpec
from gateway.policy.store import load_policy_dir

BUNDLE = """\
providers:
  demo: {{type: mock}}
models:
  m: {{deployments: [{{provider: demo, model: m}}]}}
teams:
  search:
    models: ["*"]
    per_user: {per_user}
"""


def load(tmp_path: Path, per_user: str):  # type: ignore[no-untyped-def]
    (tmp_path / "bundle.yaml").write_text(BUNDLE.format(per_user=per_user))
    return load_policy_dir(tmp_path, {})


def problems(tmp_path: Path, per_user: str) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        load(tmp_path, per_user)
    return [str(i) for i in caught.value.issues]


def test_each_users_budgets_of_any_period_and_unit_compile_in_order(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        "{tokens_per_day: 500, budgets: [{period: week, tokens: 2000}, {period: month, usd: 5}]}",
    )
    assert user_budgets(policy.teams["search"].per_user) == (
        Budget(BudgetPeriod.DAY, 500, None),
        Budget(BudgetPeriod.WEEK, 2000, None),
        Budget(BudgetPeriod.MONTH, None, 5.0),
    )
    assert user_budgets(None) == ()


@pytest.mark.parametrize(
    ("per_user", "said"),
    [
        (
            "{tokens_per_day: 5, budgets: [{period: day, tokens: 9}]}",
            "tokens_per_day and budgets[0] are both day tokens budgets",
        ),
        (
            "{budgets: [{period: month, usd: 1}, {period: week, usd: 1}, {period: month, usd: 2}]}",
            "budgets[0] and budgets[2] are both month usd budgets",
        ),
    ],
)
def test_a_user_budget_named_twice_is_an_error_at_its_place(
    tmp_path: Path, per_user: str, said: str
) -> None:
    """Both forms of one day-tokens budget, or two entries of one period and unit: one
    counter charged twice per request, so the check refuses it, naming both."""
    (found,) = problems(tmp_path, per_user)
    assert "bundle.yaml:" in found and "teams.search.per_user.budgets: " in found
    assert said in found and "a user has one budget per period and unit" in found


@pytest.mark.parametrize(
    "entry",
    [
        "{period: year, tokens: 1}",
        "{period: day}",
        "{period: day, tokens: 1, usd: 1}",
        "{period: day, tokens: 0}",
    ],
)
def test_a_user_budget_entry_is_checked_like_a_teams(tmp_path: Path, entry: str) -> None:
    (found,) = problems(tmp_path, f"{{budgets: [{entry}]}}")
    assert "teams.search.per_user.budgets[0]" in found


ENTRY = st.tuples(st.sampled_from(["day", "week", "month"]), st.sampled_from(["tokens", "usd"]))


@given(st.lists(ENTRY, max_size=6), st.booleans())
def test_valid_exactly_when_no_period_and_unit_repeats(
    entries: list[tuple[str, str]], per_day: bool
) -> None:
    """Over any mix of entries (and tokens_per_day), the section is valid exactly when no
    (period, unit) is named twice; then each becomes one budget, tokens_per_day first."""
    named = [("day", "tokens")] * per_day + entries
    spec = {
        "budgets": [{"period": period, unit: 3} for period, unit in entries],
        **({"tokens_per_day": 7} if per_day else {}),
    }
    if len(set(named)) < len(named):
        with pytest.raises(ValidationError, match="a user has one budget per period and unit"):
            PerUserSpec.model_validate(spec)
        return
    compiled = user_budgets(PerUserSpec.model_validate(spec))
    assert [(b.period.value, "tokens" if b.tokens else "usd") for b in compiled] == named
