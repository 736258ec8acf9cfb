"""What a caller sees of the limits: the 429/503 refusals and the x-ratelimit-* headers.

Shaped like OpenAI's own (REFERENCE §1.3-1.5): a rate limit is a 429
rate_limit_error/rate_limit_exceeded with `retry-after` and `retry-after-ms` set to
the real time until it fits, which the openai SDK waits and retries; an exhausted
budget is a 429 insufficient_quota with `x-should-retry: false` and no retry-after,
which the SDK does not retry. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, final

from gateway.errors import GatewayError
from gateway.limits.budget import Counter, Verdict
from gateway.limits.errors import BudgetExhausted, RateLimited
from gateway.limits.plan import BudgetRule, ConcurrencyCheck, RateKind, RateRule, Scope, Unit
from gateway.usage.pricing import usd_text

# Concurrency frees when some request ends, which nobody can know: a short hint.
CONCURRENCY_RETRY_MS: Final = 1000


@final
class RateView:
    """The tightest rate key of one kind (team or user) after a reservation, or as it
    stands at a refusal: what its three x-ratelimit-* headers show."""

    __slots__ = ("limit", "remaining", "reset_ms")

    def __init__(self, limit: int, remaining: int, reset_ms: int) -> None:
        self.limit: Final = limit
        self.remaining: Final = remaining
        self.reset_ms: Final = reset_ms

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RateView) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"RateView(limit={self.limit}, remaining={self.remaining}, reset_ms={self.reset_ms})"

    def _fields(self) -> tuple[int, int, int]:
        return (self.limit, self.remaining, self.reset_ms)


# The tightest rate key of each kind, (requests, tokens): what the six headers show.
RateViews = tuple[RateView | None, RateView | None]
NO_VIEWS: Final[RateViews] = (None, None)


@dataclass(frozen=True, slots=True)
class BudgetRefusal:
    check: BudgetRule
    amount: int  # the request's estimate on it
    verdict: Verdict
    counter: Counter
    views: RateViews = NO_VIEWS  # the rate keys as they stand (a refusal takes nothing)


@dataclass(frozen=True, slots=True)
class RateRefusal:
    check: RateRule
    amount: int  # 1 (rpm), or the request's estimated tokens (tpm)
    retry_after_ms: int  # -1: the request alone is larger than the limit
    remaining: int
    reset_ms: int
    views: RateViews = NO_VIEWS  # the rate keys as they stand (a refusal takes nothing)


@dataclass(frozen=True, slots=True)
class ConcurrencyRefusal:
    check: ConcurrencyCheck
    in_flight: int
    views: RateViews = NO_VIEWS  # the rate keys as they stand (a refusal takes nothing)


Refusal = BudgetRefusal | RateRefusal | ConcurrencyRefusal


def go_duration(ms: int) -> str:
    """A duration as OpenAI's reset headers write it (Go's style): 0s, 20ms, 1.5s, 6m0s,
    1h2m3s."""
    if ms <= 0:
        return "0s"  # Go writes a zero duration in seconds, never "0ms"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


# A request too large for a whole budget or tpm. Its estimate holds an output cap even when
# the request set none (the team's max_tokens_default, or 4096): say so, not "lower" a
# field it never sent.
SHRINK_HINT: Final = (
    "Set a smaller output cap (max_tokens, max_completion_tokens or max_output_tokens; "
    "without one, the team's default output allowance is reserved) or fewer choices (n), "
    "or shorten the prompt."
)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _amount(unit: Unit, value: int) -> str:
    return f"{value} tokens" if unit is Unit.TOKENS else f"{usd_text(value)} USD"


def _whose(scope: Scope, team: str) -> str:
    return f"team '{team}'" if scope is Scope.TEAM else f"your per-user budget in team '{team}'"


def _budget_named(check: BudgetRule, team: str, *, whole: bool = False) -> str:
    """`the day token budget of team 's'`; a user's: `your per-user day token budget in
    team 's'`. `whole`: `the whole day token budget…`, `the whole of your per-user…`."""
    kind = f"{check.period} {'token' if check.unit is Unit.TOKENS else 'USD'} budget"
    if check.scope is Scope.TEAM:
        return f"the {'whole ' if whole else ''}{kind} of team '{team}'"
    return f"{'the whole of ' if whole else ''}your per-user {kind} in team '{team}'"


def budget_error(refusal: BudgetRefusal, team: str) -> BudgetExhausted:
    check, counter = refusal.check, refusal.counter
    limit = _amount(check.unit, check.limit)
    if refusal.verdict is Verdict.TOO_LARGE:
        message = (
            f"This request's estimate ({_amount(check.unit, refusal.amount)}: the prompt plus "
            f"the output it may generate) is more than {_budget_named(check, team, whole=True)}"
            f" ({limit}). {SHRINK_HINT}"
        )
    else:
        # The request's own estimate is part of the sum: a follow-up carrying a long
        # conversation is refused with the budget far from spent (a probe read "You
        # exceeded" with nothing exceeded and the deciding number missing).
        message = (
            f"This request would exceed {_budget_named(check, team)}: limit "
            f"{limit}, used {_amount(check.unit, counter.used)}, reserved by requests in "
            f"flight {_amount(check.unit, counter.reserved)}, this request's estimate "
            f"{_amount(check.unit, refusal.amount)} (the prompt plus the output it may "
            f"generate). It resets at {_iso(check.resets_ms)}."
        )
    return BudgetExhausted(
        message,
        headers={
            "x-should-retry": "false",
            "x-gateway-budget": f"{check.scope}:{check.unit}:{check.period}",
            "x-gateway-budget-reset": _iso(check.resets_ms),
            **ratelimit_header_text(refusal.views),
        },
    )


def rate_error(refusal: RateRefusal, team: str) -> RateLimited:
    check = refusal.check
    per = "requests per min (RPM)" if check.kind is RateKind.REQUESTS else "tokens per min (TPM)"
    who = _whose(check.scope, team).replace("budget", "limit")
    if refusal.retry_after_ms < 0:
        return RateLimited(
            f"Request too large for {who} on {per}: Limit {check.limit}, "
            f"Requested {refusal.amount}. {SHRINK_HINT}",
            headers={"x-should-retry": "false", **ratelimit_header_text(refusal.views)},
        )
    used = check.limit - refusal.remaining
    return RateLimited(
        f"Rate limit reached for {who} on {per}: Limit {check.limit}, Used {used}, "
        f"Requested {refusal.amount}. Please try again in {go_duration(refusal.retry_after_ms)}.",
        headers={
            **retry_headers(refusal.retry_after_ms),
            **ratelimit_header_text(refusal.views),
        },
    )


def concurrency_error(refusal: ConcurrencyRefusal, team: str) -> RateLimited:
    who = _whose(refusal.check.scope, team).replace("budget", "limit")
    return RateLimited(
        f"Too many requests at once for {who}: Limit {refusal.check.limit} concurrent, "
        f"in flight {refusal.in_flight}. Please try again when one finishes.",
        headers={
            **retry_headers(CONCURRENCY_RETRY_MS),
            **ratelimit_header_text(refusal.views),
        },
    )


def retry_headers(ms: int) -> dict[str, str]:
    """retry-after in whole seconds (rounded up: never early), retry-after-ms exact."""
    return {"retry-after": str(max(1, -(-ms // 1000))), "retry-after-ms": str(ms)}


def refusal_error(refusal: Refusal, team: str) -> GatewayError:
    if isinstance(refusal, BudgetRefusal):
        return budget_error(refusal, team)
    if isinstance(refusal, RateRefusal):
        return rate_error(refusal, team)
    return concurrency_error(refusal, team)


def is_tighter(remaining: int, reset_ms: int, than: RateView | None) -> bool:
    """Is a key at (remaining, reset_ms) tighter than `than`: fewer remaining, then the
    later reset (the first of equals stays)."""
    return (
        than is None
        or remaining < than.remaining
        or (remaining == than.remaining and reset_ms > than.reset_ms)
    )


def tightest(
    views: Iterable[tuple[RateKind, int, int, int]],
) -> tuple[RateView | None, RateView | None]:
    """(requests, tokens): the tightest of each kind among (kind, limit, remaining, reset_ms)."""
    requests = tokens = None
    for kind, limit, remaining, reset_ms in views:
        if kind is RateKind.REQUESTS:
            if is_tighter(remaining, reset_ms, requests):
                requests = RateView(limit, remaining, reset_ms)
        elif is_tighter(remaining, reset_ms, tokens):
            tokens = RateView(limit, remaining, reset_ms)
    return requests, tokens


_REQUESTS_NAMES: Final = (
    b"x-ratelimit-limit-requests",
    b"x-ratelimit-remaining-requests",
    b"x-ratelimit-reset-requests",
)
_TOKENS_NAMES: Final = (
    b"x-ratelimit-limit-tokens",
    b"x-ratelimit-remaining-tokens",
    b"x-ratelimit-reset-tokens",
)


def ratelimit_headers(
    requests: RateView | None, tokens: RateView | None
) -> list[tuple[bytes, bytes]]:
    """OpenAI's six headers (three per kind that has a limit), on every answer. A reset
    under a second and above zero (the usual) skips go_duration's arithmetic."""
    headers: list[tuple[bytes, bytes]] = []
    for view, (limit, remaining, reset) in ((requests, _REQUESTS_NAMES), (tokens, _TOKENS_NAMES)):
        if view is None:
            continue
        ms = view.reset_ms
        headers += (
            (limit, b"%d" % view.limit),
            (remaining, b"%d" % view.remaining),
            (reset, b"%dms" % ms if 0 < ms < 1000 else go_duration(ms).encode()),
        )
    return headers


def ratelimit_header_text(views: RateViews) -> dict[str, str]:
    """ratelimit_headers as an error's headers (a refusal's: its rate keys unchanged)."""
    return {name.decode(): value.decode() for name, value in ratelimit_headers(*views)}
