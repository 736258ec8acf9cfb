"""Budget eras: a budget that leaves the policy and comes back starts a new counter.

Budget counters are keyed by (scope, unit, period, period start), not by the amount, so
editing a budget never changes recorded usage (limits/plan.py). While a budget is out of
the policy nothing charges its counter; had it come back in the same period, the old
counter would have missed what was spent meanwhile (and moving the timezone away and
back would do the same). So each budget identity (team, scope, unit, period, timezone)
carries its era: the version since which it has been in force without a break. A
return is a new era, hence a new counter, rebuilt from the ledger like any budget that
is new. Eras are worked out when a version is committed, from the version it replaces,
and stored with it: every replica keys the same counters. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from gateway.policy.compiled import Policy

# An identity in force since before eras were recorded (or since the first version)
# has era 0: its counters keep the keys they had.
FIRST_ERA = 0


def identity(team: str, scope: str, unit: str, period: str, timezone: str) -> str:
    """One budget's identity; names hold no spaces (policy/schema.py's NAME)."""
    return f"{team} {scope} {unit} {period} {timezone}"


def identities(bundle: Mapping[str, Any]) -> set[str]:
    """Every budget identity of a bundle as stored (canonical JSON, already valid)."""
    timezone = bundle.get("timezone", "UTC")
    found: set[str] = set()
    for name, team in (bundle.get("teams") or {}).items():
        per_user = team.get("per_user") or {}
        for scope, budgets in (("team", team.get("budgets")), ("user", per_user.get("budgets"))):
            for budget in budgets or ():
                for unit in ("tokens", "usd"):
                    if budget.get(unit) is not None:
                        found.add(identity(name, scope, unit, budget["period"], timezone))
        if per_user.get("tokens_per_day") is not None:  # the user's {period: day, tokens}
            found.add(identity(name, "user", "tokens", "day", timezone))
    return found


def eras_after(
    parent: Mapping[str, Any] | None,
    parent_eras: Mapping[str, int],
    bundle: Mapping[str, Any],
    version: int,
) -> dict[str, int]:
    """The eras of `bundle` committed as `version` over `parent` (None: the first
    version). Only eras past the first are kept."""
    before = identities(parent) if parent is not None else set()
    eras: dict[str, int] = {}
    for found in sorted(identities(bundle)):
        if found in before:
            era = parent_eras.get(found, FIRST_ERA)
        else:
            era = FIRST_ERA if parent is None else version
        if era != FIRST_ERA:
            eras[found] = era
    return eras


def with_eras(policy: Policy, eras: Mapping[str, int]) -> Policy:
    """`policy` whose teams know their budgets' eras, by "scope unit period"."""
    if not eras:
        return policy
    by_team: dict[str, list[tuple[str, int]]] = {}
    for key, era in eras.items():
        team, scope, unit, period, timezone = key.split(" ")
        if timezone == policy.timezone and team in policy.teams:
            by_team.setdefault(team, []).append((f"{scope} {unit} {period}", era))
    if not by_team:
        return policy
    teams = dict(policy.teams)
    for name, team_eras in by_team.items():
        teams[name] = dataclasses.replace(teams[name], budget_eras=tuple(sorted(team_eras)))
    return dataclasses.replace(policy, teams=MappingProxyType(teams))
