"""The live usage view: every budget and limit of a team (or one user in it) with used,
reserved, remaining and when its period resets. Shared by GET /admin/teams/{team}/usage
and `gateway usage` (one service layer).

A counter the backend has not rebuilt yet is rebuilt from the ledger first, so the
view never shows a budget as unused because nobody asked since a restart. With
`reserved_known=False` (the CLI beside an in-process server, which holds its
reservations and rate buckets in its own memory) reserved, remaining and the rate
limits are shown as null: unknown here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.limits.backend import NeedsSeed
from gateway.limits.plan import Estimate, Plan, Scope, Shape, Unit, build_plan
from gateway.limits.service import Limits
from gateway.policy.compiled import Policy, TeamRules
from gateway.usage.pricing import usd_text


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _amount(unit: Unit, value: int | None) -> int | str | None:
    if value is None or unit is Unit.TOKENS:
        return value
    return usd_text(value)


def _only(plan: Plan, user: str | None) -> Plan:
    wanted = {Scope.TEAM} if user is None else {Scope.TEAM, Scope.USER}
    shape = plan.shape
    only = Shape(
        shape.team,
        shape.subject,
        tuple(c for c in shape.budgets if c.scope in wanted),
        tuple(c for c in shape.rates if c.scope in wanted),
        tuple(c for c in shape.concurrency if c.scope in wanted),
    )
    return plan.with_shape(only)


async def usage_view(
    limits: Limits,
    policy: Policy,
    team: TeamRules,
    user: str | None,
    *,
    reserved_known: bool = True,
) -> dict[str, Any]:
    now_ms = limits.clock()
    whole = build_plan(team, user or "", Estimate(0, 0), now_ms, timezone=policy.timezone)
    plan = _only(whole, user)
    snap = await limits.snapshot(plan)
    missing = tuple(c for c, n in zip(plan.budgets, snap.budgets, strict=True) if n is None)
    if missing:
        await limits.seed(plan, NeedsSeed(missing))
        snap = await limits.snapshot(plan)
    budgets = []
    for check, counter in zip(plan.budgets, snap.budgets, strict=True):
        used = None if counter is None else counter.used
        reserved = counter.reserved if counter is not None and reserved_known else None
        remaining = None
        if used is not None and reserved is not None:  # reserved unknown: so is the rest
            remaining = max(0, check.limit - used - reserved)
        budgets.append(
            {
                "scope": str(check.scope),
                "period": str(check.period),
                "unit": str(check.unit),
                "limit": _amount(check.unit, check.limit),
                "used": _amount(check.unit, used),
                "reserved": _amount(check.unit, reserved),
                "remaining": _amount(check.unit, remaining),
                "period_start": _iso(check.starts_ms),
                "resets_at": _iso(check.resets_ms),
            }
        )
    rates = []
    for rate, (remaining_units, reset_ms) in zip(plan.rates, snap.rates, strict=True):
        rates.append(
            {
                "scope": str(rate.scope),
                "kind": "rpm" if rate.kind == "requests" else "tpm",
                "limit": rate.limit,
                "used": rate.limit - remaining_units if reserved_known else None,
                "remaining": remaining_units if reserved_known else None,
                "resets_in_ms": reset_ms if reserved_known else None,
            }
        )
    for conc, in_flight in zip(plan.concurrency, snap.concurrency, strict=True):
        rates.append(
            {
                "scope": str(conc.scope),
                "kind": "concurrency",
                "limit": conc.limit,
                "used": in_flight if reserved_known else None,
                "remaining": max(0, conc.limit - in_flight) if reserved_known else None,
                "resets_in_ms": None,
            }
        )
    return {
        "team": team.name,
        "user": user,
        "at": _iso(now_ms),
        "timezone": policy.timezone,
        "budgets": budgets,
        "limits": rates,
        # the team view: what each user may spend on their own (their counters: --user)
        "per_user": _per_user_rules(whole.shape) if user is None else [],
    }


def _per_user_rules(shape: Shape) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {
            "kind": "budget",
            "period": str(c.period),
            "unit": str(c.unit),
            "limit": _amount(c.unit, c.limit),
            "resets_at": _iso(c.resets_ms),
        }
        for c in shape.budgets
        if c.scope is Scope.USER
    ]
    rules += [
        {"kind": "rpm" if r.kind == "requests" else "tpm", "limit": r.limit}
        for r in shape.rates
        if r.scope is Scope.USER
    ]
    rules += [
        {"kind": "concurrency", "limit": c.limit}
        for c in shape.concurrency
        if c.scope is Scope.USER
    ]
    return rules
