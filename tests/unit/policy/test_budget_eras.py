"""Budget eras (policy/budget_eras.py): a budget in force without a break keeps its era
(its counter); one that left and came back starts a new one at the version it returned."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.limits.plan import BudgetPeriod, Scope, Unit, budget_key
from gateway.policy.budget_eras import eras_after, identities, identity, with_eras
from gateway.policy.compiled import Policy, TeamRules


def bundle(*budgets: tuple[str, str, str], timezone: str = "UTC", per_user: bool = False) -> dict:  # type: ignore[type-arg]
    """A stored bundle whose team `t` has (unit, period, amount) budgets."""
    team: dict[str, Any] = {
        "models": ["*"],
        "budgets": [{"period": period, unit: amount} for unit, period, amount in budgets],
    }
    if per_user:
        team["per_user"] = {"tokens_per_day": 10}
    return {"timezone": timezone, "teams": {"t": team}}


DAY_TOKENS = ("tokens", "day", "100")
MONTH_USD = ("usd", "month", "5.0")


def test_identities_name_team_scope_unit_period_and_timezone() -> None:
    found = identities(bundle(DAY_TOKENS, MONTH_USD, per_user=True, timezone="Europe/Paris"))
    assert found == {
        "t team tokens day Europe/Paris",
        "t team usd month Europe/Paris",
        "t user tokens day Europe/Paris",
    }
    assert identities({"teams": {"t": {"models": []}}}) == set()  # timezone defaults to UTC


def test_the_first_version_and_a_budget_kept_through_edits_stay_in_era_zero() -> None:
    first = eras_after(None, {}, bundle(DAY_TOKENS), 1)
    assert first == {}
    edited = bundle(("tokens", "day", "999"))  # a new amount: the same counter
    assert eras_after(bundle(DAY_TOKENS), first, edited, 2) == {}


def test_a_budget_that_comes_back_starts_an_era_at_its_return() -> None:
    v2 = eras_after(bundle(DAY_TOKENS), {}, bundle(MONTH_USD), 2)  # day removed, month new
    assert v2 == {identity("t", "team", "usd", "month", "UTC"): 2}
    v3 = eras_after(bundle(MONTH_USD), v2, bundle(DAY_TOKENS, MONTH_USD), 3)
    assert v3 == {
        identity("t", "team", "tokens", "day", "UTC"): 3,
        identity("t", "team", "usd", "month", "UTC"): 2,  # kept: in force since 2
    }


def test_a_timezone_moved_away_and_back_is_a_return() -> None:
    away = eras_after(bundle(DAY_TOKENS), {}, bundle(DAY_TOKENS, timezone="Asia/Tokyo"), 2)
    back = eras_after(bundle(DAY_TOKENS, timezone="Asia/Tokyo"), away, bundle(DAY_TOKENS), 3)
    assert back == {identity("t", "team", "tokens", "day", "UTC"): 3}


@given(st.lists(st.sets(st.sampled_from(["a", "b", "c"])), min_size=1, max_size=12))
def test_an_era_is_the_version_its_unbroken_run_began_or_zero_since_the_first(
    presence: list[set[str]],
) -> None:
    """Over any history, each budget's era at each version is where its current run of
    versions began (0 for a run that began at version 1)."""
    units = {
        "a": ("tokens", "day", "1"),
        "b": ("usd", "week", "1.0"),
        "c": ("tokens", "month", "1"),
    }
    parent: dict[str, Any] | None = None
    eras: dict[str, int] = {}
    for number, present in enumerate(presence, start=1):
        current = bundle(*(units[name] for name in sorted(present)))
        eras = eras_after(parent, eras, current, number)
        for name in present:
            unit, period, _ = units[name]
            began = number
            while began > 1 and name in presence[began - 2]:
                began -= 1
            expected = 0 if began == 1 else began
            assert eras.get(identity("t", "team", unit, period, "UTC"), 0) == expected
        assert len(eras) <= len(present)  # nothing kept for a budget not in force
        parent = current


def test_a_teams_counters_carry_their_era_in_the_key() -> None:
    policy = Policy({}, {}, {"t": TeamRules("t", True, frozenset())}, "h", timezone="UTC")
    eras = {
        identity("t", "team", "tokens", "day", "UTC"): 3,
        identity("t", "team", "usd", "day", "Asia/Tokyo"): 4,  # another timezone: not now
        identity("gone", "team", "tokens", "day", "UTC"): 5,  # a team not in this version
    }
    assert with_eras(policy, eras).teams["t"].budget_eras == (("team tokens day", 3),)
    assert with_eras(policy, {}) is policy
    plain = budget_key(Scope.TEAM, "s", Unit.TOKENS, BudgetPeriod.DAY, 1000)
    assert plain == "b:t:tokens:day:1000"  # era 0: the key counters always had
    assert budget_key(Scope.TEAM, "s", Unit.TOKENS, BudgetPeriod.DAY, 1000, 3) == plain + ":e3"


def test_every_per_user_budget_is_an_identity_of_its_own() -> None:
    """A user's week-tokens and month-USD budgets come and go like a team's: each has its
    identity (tokens_per_day is the user's day-tokens one)."""
    stored = bundle(DAY_TOKENS)
    stored["teams"]["t"]["per_user"] = {
        "tokens_per_day": 5,
        "budgets": [{"period": "week", "tokens": 9}, {"period": "month", "usd": 1.5}],
    }
    assert identities(stored) == {
        "t team tokens day UTC",
        "t user tokens day UTC",
        "t user tokens week UTC",
        "t user usd month UTC",
    }
    without_week = bundle(DAY_TOKENS)
    without_week["teams"]["t"]["per_user"] = {"budgets": [{"period": "month", "usd": 1.5}]}
    v2 = eras_after(stored, {}, without_week, 2)
    v3 = eras_after(without_week, v2, stored, 3)
    assert v3 == {
        identity("t", "user", "tokens", "week", "UTC"): 3,  # back: a new counter
        identity("t", "user", "tokens", "day", "UTC"): 3,
    }
