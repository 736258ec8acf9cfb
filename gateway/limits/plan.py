"""What one request must reserve: every applicable budget, rate and concurrency limit.

Pure: built from the team's rules, the caller's subject, the request's estimate and
the instant. Each check names its counter by a key that holds no limit value, so
editing or adding a budget never changes recorded usage: counters are keyed by
(scope, unit, period, period start) and a new budget reads the same counter; a budget
back in the policy after a break reads a new one (its era, policy/budget_eras.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, NamedTuple, final
from urllib.parse import quote

from gateway.limits.periods import period_bounds
from gateway.policy.compiled import BudgetPeriod, TeamRules, user_budgets
from gateway.usage.nano import usd_to_nano

# A reservation nobody settles (its replica died) frees itself this long after the
# request's own deadline: a dead replica holds nothing for ever.
LEASE_GRACE_MS: Final = 60_000


class Scope(StrEnum):
    TEAM = "team"
    USER = "user"


class Unit(StrEnum):
    TOKENS = "tokens"
    USD = "usd"  # counted in nano-USD


class RateKind(StrEnum):
    REQUESTS = "requests"  # rpm
    TOKENS = "tokens"  # tpm


# Built for every request: plain final classes with read-only (Final) fields. Compiled by
# mypyc (native.py) one is made in C, ~30 ns; a NamedTuple runs a Python __new__ (~240 ns)
# and a dataclass a Python __init__ (bench/RESULTS.md, session 17).
class Amounts:
    """Tokens and nano-USD: an Estimate before a request, an Actual after it."""

    __slots__ = ("nanousd", "tokens")

    def __init__(self, tokens: int, nanousd: int) -> None:
        self.tokens: Final = tokens
        self.nanousd: Final = nanousd

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.pair() == other.pair()

    def __hash__(self) -> int:
        return hash(self.pair())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tokens={self.tokens}, nanousd={self.nanousd})"

    def pair(self) -> tuple[int, int]:
        return (self.tokens, self.nanousd)


@final
class Estimate(Amounts):
    """A request's worst case: prompt + output allowance, priced at the dearest deployment."""

    __slots__ = ()


@final
class Actual(Amounts):
    """What a request really used; None in its place means no upstream answered."""

    __slots__ = ()


class BudgetRule(NamedTuple):
    """A budget check less the request's amount: the same for every request of a minute."""

    key: str
    scope: Scope
    unit: Unit
    period: BudgetPeriod
    limit: int  # tokens, or nano-USD
    starts_ms: int
    resets_ms: int

    def actual(self, used: Actual) -> int:
        return used.tokens if self.unit is Unit.TOKENS else used.nanousd


class RateRule(NamedTuple):
    """A rate check less the request's amount (1 for rpm, the estimated tokens for tpm)."""

    key: str
    scope: Scope
    kind: RateKind
    limit: int  # per minute


@dataclass(frozen=True, slots=True)
class ConcurrencyCheck:
    key: str
    scope: Scope
    limit: int


@dataclass(frozen=True, slots=True, eq=False)  # compared by identity: one per cache entry
class Shape:
    """A team's checks for one subject during one minute, less the request's amounts:
    everything in a plan that does not change from one request to the next."""

    team: str
    subject: str
    budgets: tuple[BudgetRule, ...]
    rates: tuple[RateRule, ...]
    concurrency: tuple[ConcurrencyCheck, ...]
    is_empty: bool = field(init=False)  # no check at all: nothing to reserve
    # a budget or a tpm rule: the output allowance reserved must also cap the output
    spends_tokens: bool = field(init=False)

    def __post_init__(self) -> None:
        is_empty = not (self.budgets or self.rates or self.concurrency)
        object.__setattr__(self, "is_empty", is_empty)  # a frozen dataclass's own field
        spends = bool(self.budgets) or any(r.kind is RateKind.TOKENS for r in self.rates)
        object.__setattr__(self, "spends_tokens", spends)


@final
class Plan:
    """What one request reserves: its shape's checks, each with one of the two amounts
    (a token rule reserves `tokens`, a USD one `nanousd`, an rpm rule 1)."""

    __slots__ = ("lease_ms", "nanousd", "shape", "tokens")

    def __init__(self, shape: Shape, tokens: int, nanousd: int, lease_ms: int) -> None:
        self.shape: Final = shape
        self.tokens: Final = tokens
        self.nanousd: Final = nanousd
        self.lease_ms: Final = lease_ms  # how long the reservation holds without a settle

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plan) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"Plan(shape={self.shape!r}, tokens={self.tokens}, nanousd={self.nanousd}, "
            f"lease_ms={self.lease_ms})"
        )

    def _fields(self) -> tuple[Shape, int, int, int]:
        return (self.shape, self.tokens, self.nanousd, self.lease_ms)

    def with_shape(self, shape: Shape) -> Plan:
        return Plan(shape, self.tokens, self.nanousd, self.lease_ms)

    @property
    def team(self) -> str:
        return self.shape.team

    @property
    def subject(self) -> str:
        return self.shape.subject

    @property
    def budgets(self) -> tuple[BudgetRule, ...]:
        return self.shape.budgets

    @property
    def rates(self) -> tuple[RateRule, ...]:
        return self.shape.rates

    def amount(self, rule: BudgetRule | RateRule) -> int:
        """What this request reserves on `rule`: its tokens on a token budget or tpm, its
        nano-USD on a USD budget, 1 on rpm."""
        if isinstance(rule, BudgetRule):
            return self.tokens if rule.unit is Unit.TOKENS else self.nanousd
        return self.tokens if rule.kind is RateKind.TOKENS else 1

    @property
    def concurrency(self) -> tuple[ConcurrencyCheck, ...]:
        return self.shape.concurrency

    @property
    def is_empty(self) -> bool:
        return self.shape.is_empty


def owner(scope: Scope, subject: str) -> str:
    """The key prefix of a counter's owner; a subject is quoted (no spaces, no ':')."""
    return "t" if scope is Scope.TEAM else f"u:{quote(subject, safe='')}"


def budget_key(
    scope: Scope, subject: str, unit: Unit, period: BudgetPeriod, start: int, era: int = 0
) -> str:
    """A budget's counter. `era` > 0: the budget came back into the policy at that
    version, and counts anew from the ledger (policy/budget_eras.py)."""
    key = f"b:{owner(scope, subject)}:{unit}:{period}:{start}"
    return key if era == 0 else f"{key}:e{era}"


def key_owner(key: str) -> str:
    """The owner a budget key names (`owner`'s 't' or 'u:<quoted subject>')."""
    parts = key.split(":", 3)
    return parts[1] if parts[1] == "t" else f"{parts[1]}:{parts[2]}"


def adopted_amount(rule: BudgetRule, plan: Plan, started_ms: int) -> int:
    """What a hold of the rule's team still in flight (its plan, its request started at
    `started_ms`) must reserve on the counter of `rule` when that counter is rebuilt from
    the ledger: the ledger holds only finished requests, and the hold reserved on other
    keys (the budget was added, or its period or timezone changed, while it ran). Its
    estimate in the rule's unit when the rule applies to it (the period holds its start,
    as it does its ledger row; a user's budget, that user's); else 0."""
    if not rule.starts_ms <= started_ms < rule.resets_ms:
        return 0
    if rule.scope is Scope.USER and key_owner(rule.key) != owner(Scope.USER, plan.subject):
        return 0
    if any(reserved.key == rule.key for reserved in plan.budgets):
        return 0
    return plan.amount(rule)


# Shapes kept (one per team x subject x timezone): more than this and the cache starts over.
SHAPES_KEPT: Final = 8192


_Cached = tuple[TeamRules, int, Shape]  # the rules it was built from, its minute, the shape
_shapes: Final[dict[tuple[int, str, str, bool], _Cached]] = {}


def _shape(
    team: TeamRules, subject: str, minute: int, timezone: str, *, spends_tokens: bool
) -> Shape:
    now_ms = minute * 60_000
    budgets: list[BudgetRule] = []
    eras = dict(team.budget_eras)

    def add_budget(scope: Scope, unit: Unit, period: BudgetPeriod, limit: int) -> None:
        start, end = period_bounds(period, now_ms, timezone)
        era = eras.get(f"{scope} {unit} {period}", 0)
        key = budget_key(scope, subject, unit, period, start, era)
        budgets.append(BudgetRule(key, scope, unit, period, limit, start, end))

    per_user = team.per_user
    if spends_tokens:
        for budget in team.budgets:
            if budget.tokens is not None:
                add_budget(Scope.TEAM, Unit.TOKENS, budget.period, budget.tokens)
            if budget.usd is not None:
                add_budget(Scope.TEAM, Unit.USD, budget.period, usd_to_nano(budget.usd))
        # Each user's own: keyed by the subject, so one user's spend is never another's.
        for budget in user_budgets(per_user):
            if budget.tokens is not None:
                add_budget(Scope.USER, Unit.TOKENS, budget.period, budget.tokens)
            if budget.usd is not None:
                add_budget(Scope.USER, Unit.USD, budget.period, usd_to_nano(budget.usd))

    rates: list[RateRule] = []
    concurrency: list[ConcurrencyCheck] = []
    for scope, spec in ((Scope.TEAM, team.limits), (Scope.USER, per_user)):
        if spec is None:
            continue
        who = owner(scope, subject)
        # A rate key does not name its limit: a bucket's level counts units taken, whatever
        # the limit (gcra.py), so an edited rpm or tpm keeps what the minute used already
        # (tightened, a busy team gets no fresh burst; loosened, only the difference).
        if spec.rpm is not None:
            rates.append(RateRule(f"r:{who}:rpm", scope, RateKind.REQUESTS, spec.rpm))
        if spec.tpm is not None and spends_tokens:
            rates.append(RateRule(f"r:{who}:tpm", scope, RateKind.TOKENS, spec.tpm))
        if spec.concurrency is not None:
            concurrency.append(ConcurrencyCheck(f"c:{who}", scope, spec.concurrency))
    return Shape(team.name, subject, tuple(budgets), tuple(rates), tuple(concurrency))


def shape_of(
    team: TeamRules, subject: str, now_ms: int, timezone: str = "UTC", *, spends_tokens: bool = True
) -> Shape:
    """The team's checks for `subject` now, built once per team, subject and minute.
    `spends_tokens=False` (a response-cache hit): only rpm and concurrency."""
    minute = now_ms // 60_000
    cache_key = (id(team), subject, timezone, spends_tokens)
    cached = _shapes.get(cache_key)
    if cached is not None and cached[0] is team and cached[1] == minute:
        return cached[2]
    if len(_shapes) >= SHAPES_KEPT:
        _shapes.clear()
    shape = _shape(team, subject, minute, timezone, spends_tokens=spends_tokens)
    _shapes[cache_key] = (team, minute, shape)
    return shape


def lease_ms(deadline_s: float) -> int:
    return int(deadline_s * 1000) + LEASE_GRACE_MS


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
    shape = shape_of(team, subject, now_ms, timezone)
    return Plan(shape, estimate.tokens, estimate.nanousd, lease_ms(deadline_s))
