"""What one request must reserve: every applicable budget, rate and concurrency limit.

Pure: built from the team's rules, the caller's subject, the request's estimate and
the instant. Each check names its counter by a key that holds no limit value, so
editing or adding a budget never changes recorded usage: counters are keyed by
(scope, unit, period, period start) and a new budget reads the same counter.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple
from urllib.parse import quote

from gateway.limits.periods import period_bounds
from gateway.policy.compiled import BudgetPeriod, TeamRules

NANO_PER_USD = 10**9
# A reservation nobody settles (its replica died) frees itself this long after the
# request's own deadline: a dead replica holds nothing for ever.
LEASE_GRACE_MS = 60_000


class Scope(StrEnum):
    TEAM = "team"
    USER = "user"


class Unit(StrEnum):
    TOKENS = "tokens"
    USD = "usd"  # counted in nano-USD


class RateKind(StrEnum):
    REQUESTS = "requests"  # rpm
    TOKENS = "tokens"  # tpm


@dataclass(frozen=True, slots=True)
class Estimate:
    """A request's worst case: prompt + output allowance, priced at the dearest deployment."""

    tokens: int
    nanousd: int


@dataclass(frozen=True, slots=True)
class Actual:
    """What a request really used; None in its place means no upstream answered."""

    tokens: int
    nanousd: int


# The checks built for every request (they carry its amount) are NamedTuples: as
# immutable as a frozen dataclass, and a third of its cost to build.
class BudgetCheck(NamedTuple):
    key: str
    scope: Scope
    unit: Unit
    period: BudgetPeriod
    limit: int  # tokens, or nano-USD
    starts_ms: int
    resets_ms: int
    amount: int  # the estimate reserved against it

    def actual(self, used: Actual) -> int:
        return used.tokens if self.unit is Unit.TOKENS else used.nanousd


class RateCheck(NamedTuple):
    key: str
    scope: Scope
    kind: RateKind
    limit: int  # per minute
    amount: int


@dataclass(frozen=True, slots=True)
class ConcurrencyCheck:
    key: str
    scope: Scope
    limit: int


@dataclass(frozen=True, slots=True)
class Plan:
    team: str
    subject: str
    budgets: tuple[BudgetCheck, ...]
    rates: tuple[RateCheck, ...]
    concurrency: tuple[ConcurrencyCheck, ...]
    lease_ms: int  # how long the reservation holds without a settle

    @property
    def is_empty(self) -> bool:
        return not (self.budgets or self.rates or self.concurrency)


def usd_to_nano(usd: float) -> int:
    return int(Decimal(repr(usd)) * NANO_PER_USD)


def owner(scope: Scope, subject: str) -> str:
    """The key prefix of a counter's owner; a subject is quoted (no spaces, no ':')."""
    return "t" if scope is Scope.TEAM else f"u:{quote(subject, safe='')}"


def budget_key(scope: Scope, subject: str, unit: Unit, period: BudgetPeriod, start: int) -> str:
    return f"b:{owner(scope, subject)}:{unit}:{period}:{start}"


# Shapes kept (one per team x subject x timezone): more than this and the cache starts over.
SHAPES_KEPT = 8192


@dataclass(frozen=True, slots=True)
class _TokenRate:
    """A tpm check less its amount (the request's estimated tokens)."""

    key: str
    scope: Scope
    limit: int


@dataclass(frozen=True, slots=True)
class _Shape:
    """A team's checks for one subject during one minute, less the request's amounts:
    everything in a plan that does not change from one request to the next."""

    team: TeamRules  # the rules it was built from (the cache is keyed by their identity)
    minute: int  # period bounds are whole minutes (periods.py): valid for this minute
    budgets: tuple[tuple[str, Scope, Unit, BudgetPeriod, int, int, int], ...]
    rates: tuple[RateCheck | _TokenRate, ...]  # rpm checks complete (their amount is 1)
    concurrency: tuple[ConcurrencyCheck, ...]


_shapes: dict[tuple[int, str, str], _Shape] = {}


def _shape(team: TeamRules, subject: str, minute: int, timezone: str) -> _Shape:
    now_ms = minute * 60_000
    budgets: list[tuple[str, Scope, Unit, BudgetPeriod, int, int, int]] = []

    def add_budget(scope: Scope, unit: Unit, period: BudgetPeriod, limit: int) -> None:
        start, end = period_bounds(period, now_ms, timezone)
        key = budget_key(scope, subject, unit, period, start)
        budgets.append((key, scope, unit, period, limit, start, end))

    for budget in team.budgets:
        if budget.tokens is not None:
            add_budget(Scope.TEAM, Unit.TOKENS, budget.period, budget.tokens)
        if budget.usd is not None:
            add_budget(Scope.TEAM, Unit.USD, budget.period, usd_to_nano(budget.usd))
    per_user = team.per_user
    if per_user is not None and per_user.tokens_per_day is not None:
        add_budget(Scope.USER, Unit.TOKENS, BudgetPeriod.DAY, per_user.tokens_per_day)

    rates: list[RateCheck | _TokenRate] = []
    concurrency: list[ConcurrencyCheck] = []
    for scope, spec in ((Scope.TEAM, team.limits), (Scope.USER, per_user)):
        if spec is None:
            continue
        who = owner(scope, subject)
        # A rate key names its limit: a bucket's level is scaled by it (gcra.py).
        if spec.rpm is not None:
            rates.append(
                RateCheck(f"r:{who}:rpm:{spec.rpm}", scope, RateKind.REQUESTS, spec.rpm, 1)
            )
        if spec.tpm is not None:
            rates.append(_TokenRate(f"r:{who}:tpm:{spec.tpm}", scope, spec.tpm))
        if spec.concurrency is not None:
            concurrency.append(ConcurrencyCheck(f"c:{who}", scope, spec.concurrency))
    return _Shape(team, minute, tuple(budgets), tuple(rates), tuple(concurrency))


def build_plan(
    team: TeamRules,
    subject: str,
    estimate: Estimate,
    now_ms: int,
    *,
    timezone: str = "UTC",
    deadline_s: float = 60.0,
) -> Plan:
    """Every check this request must pass, each with the amount it reserves."""
    # What does not depend on the estimate is built once per team, subject and minute.
    minute = now_ms // 60_000
    cache_key = (id(team), subject, timezone)
    shape = _shapes.get(cache_key)
    if shape is None or shape.team is not team or shape.minute != minute:
        if len(_shapes) >= SHAPES_KEPT:
            _shapes.clear()
        shape = _shapes[cache_key] = _shape(team, subject, minute, timezone)
    tokens, nanousd = estimate.tokens, estimate.nanousd
    budgets = tuple(
        BudgetCheck(
            key, scope, unit, period, limit, start, end, tokens if unit is Unit.TOKENS else nanousd
        )
        for key, scope, unit, period, limit, start, end in shape.budgets
    )
    rates = tuple(
        r
        if isinstance(r, RateCheck)
        else RateCheck(r.key, r.scope, RateKind.TOKENS, r.limit, tokens)
        for r in shape.rates
    )
    lease_ms = int(deadline_s * 1000) + LEASE_GRACE_MS
    return Plan(team.name, subject, budgets, rates, shape.concurrency, lease_ms)
