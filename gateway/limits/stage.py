"""The pipeline's limits stage: the one place every inference route is estimated,
reserved and settled (pipeline.py calls `reserve_limits` after authorization and
`settle_limits` first thing in `finish`, which runs once per request however it ends).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Final

from gateway.context import Outcome
from gateway.limits.answers import RateView, RateViews, ratelimit_headers, tightest
from gateway.limits.backend import BackendUnavailable, Hold
from gateway.limits.estimate import estimate_inline, estimate_on_thread, output_capped
from gateway.limits.plan import (
    Actual,
    Estimate,
    Plan,
    RateKind,
    RateRule,
    Shape,
    lease_ms,
    shape_of,
)

log = logging.getLogger("gateway.limits")
NO_TOKENS: Final = Estimate(0, 0)  # what a cache hit reserves: rpm and concurrency only

if TYPE_CHECKING:
    from gateway.auth.principal import Principal
    from gateway.context import RequestContext
    from gateway.limits.service import Limits
    from gateway.pipeline import Grant
    from gateway.policy.compiled import Policy, TeamRules
    from gateway.policy.schema import BackendErrorMode
    from gateway.services import Services


def reserve_limits(
    ctx: RequestContext,
    policy: Policy,
    grant: Grant,
    body: Mapping[str, Any],
    services: Services,
    *,
    tokens: bool = True,
    carried: int = 0,
    large: bool = False,
) -> Coroutine[Any, Any, None] | None:
    """Reserve the request's estimate on every budget and limit of its team (and user).
    `tokens=False` (a response-cache hit, which spends none): only rpm and concurrency.
    `carried`: the tokens of the stored conversation a Responses follow-up continues
    (its verified `previous_response_id` says: routing/affinity.py), billed as input.
    `large`: a large body, estimated on a thread whatever it holds (its one walk, which
    the inline estimate makes on the loop, is long: half a million short messages).

    Done here when nothing needs waiting for (the usual case in process: a short
    prompt, counters in place): None, and no coroutine made. Else what is left, to
    await: counting a long prompt on a thread, asking Redis, rebuilding counters from
    the ledger. Raises the refusal either way."""
    ctx.limits_reached = True
    ctx.limits_policy = policy
    team = grant.team
    if not (team.budgets or team.limits or team.per_user):
        return None  # an unlimited team pays nothing for the stage
    if not tokens:
        return _reserve_waiting(ctx, policy, grant, None, services)
    shape, now_ms = _shape_now(policy, grant, services, spends_tokens=True)
    if shape.is_empty:
        return None
    if not shape.spends_tokens:  # rpm and concurrency only: no count to make
        return _hold(ctx, policy, grant, shape, NO_TOKENS, now_ms, services)
    endpoint, route = ctx.endpoint, grant.route
    found = (
        None if large else estimate_inline(endpoint, body, route, team.max_tokens_default, carried)
    )
    if found is None:  # a long prompt: counted on a thread, so the event loop keeps serving
        counting = estimate_on_thread(endpoint, body, route, team.max_tokens_default, carried)
        return _reserve_waiting(ctx, policy, grant, counting, services)
    return _hold(ctx, policy, grant, shape, found, now_ms, services)


def _shape_now(
    policy: Policy, grant: Grant, services: Services, *, spends_tokens: bool
) -> tuple[Shape, int]:
    """The team's (and user's) checks now, and that instant: one for the shape's periods
    and the reservation's. `spends_tokens=False` (a cache hit): rpm and concurrency only."""
    now_ms = services.limits.clock()
    subject = grant.principal.subject
    shape = shape_of(grant.team, subject, now_ms, policy.timezone, spends_tokens=spends_tokens)
    return shape, now_ms


def _hold(
    ctx: RequestContext,
    policy: Policy,
    grant: Grant,
    shape: Shape,
    found: Estimate,
    now_ms: int,
    services: Services,
) -> Coroutine[Any, Any, None] | None:
    """The reservation of `found` on `shape`'s checks at `now_ms`: None once held; what
    is left to await when the backend must ask a server or rebuild counters first."""
    limits = services.limits
    plan = Plan(shape, found.tokens, found.nanousd, lease_ms(grant.route.routing.timeout_s))
    mode = policy.on_backend_error
    hold = limits.reserve_now(plan, mode, now_ms, ctx.request_id)
    if hold is None:
        return _hold_later(ctx, limits, plan, mode, now_ms)
    ctx.limits_hold = hold
    return None


async def _hold_later(
    ctx: RequestContext, limits: Limits, plan: Plan, mode: BackendErrorMode, now_ms: int
) -> None:
    ctx.limits_hold = await limits.reserve(plan, mode, now_ms, ctx.request_id)


async def _reserve_waiting(
    ctx: RequestContext,
    policy: Policy,
    grant: Grant,
    counting: Awaitable[Estimate] | None,
    services: Services,
) -> None:
    """reserve_limits once the estimate `counting` on a thread is in; None: a cache hit,
    which spends no tokens (its token headers then show tpm as it stands)."""
    found = NO_TOKENS if counting is None else await counting
    spends_tokens = counting is not None
    shape, now_ms = _shape_now(policy, grant, services, spends_tokens=spends_tokens)
    if not shape.is_empty:
        waiting = _hold(ctx, policy, grant, shape, found, now_ms, services)
        if waiting is not None:
            await waiting
    if spends_tokens:
        return
    hold = ctx.limits_hold
    if hold is not None and not hold.is_checked:
        return  # the backend is down: nothing more to read from it
    team, subject = grant.team, grant.principal.subject
    ctx.limits_standing_tokens = await _standing_tokens(team, subject, services, ctx.request_id)


async def _standing_tokens(
    team: TeamRules, subject: str, services: Services, request_id: str
) -> RateView | None:
    """The tightest of the team's (and user's) tpm keys as they stand; None without tpm,
    or when the backend cannot say."""
    rates = shape_of(team, subject, services.limits.clock(), services.policy.current().timezone)
    token_rates = tuple(rule for rule in rates.rates if rule.kind is RateKind.TOKENS)
    views = await _standing_views(team.name, subject, token_rates, services, request_id)
    return None if views is None else views[1]


def forwarded_body(
    ctx: RequestContext, body: Mapping[str, Any], default_output: int | None
) -> Mapping[str, Any]:
    """The body to forward. When the reservation spends tokens (a budget, a tpm rule) and
    the caller set no output cap, the allowance the estimate assumed goes upstream as
    the cap (estimate.output_capped): what was reserved bounds what can be spent."""
    hold = ctx.limits_hold
    if hold is None or not hold.plan.shape.spends_tokens:
        return body
    return output_capped(ctx.endpoint, body, default_output)


def reserved_tokens(ctx: RequestContext, carried: int) -> int:
    """The conversation a streamed Responses answer leaves stored, at most, as known when
    its id goes out (`response.created`, before any usage): the tokens its hold reserved,
    the carried context + the new input + the output allowance, which forwarded_body
    made the answer's cap. A team with no limits, or with rpm and concurrency only
    (the stage counts no prompt that no rule spends), has no tokens reserved: the
    carried context, known without counting, a floor, not a bound, as no cap was
    forwarded either; nothing counts that team's tokens."""
    hold = ctx.limits_hold
    return carried if hold is None else max(hold.plan.tokens, carried)


def settle_limits(ctx: RequestContext, services: Services) -> None:
    """Settle the hold to the true usage, or release it all when no upstream answered.
    Charged even when the client hung up: the upstream billed us for what it generated."""
    reserved_under = ctx.limits_policy  # None: the stage did not run
    if reserved_under is None or ctx.limits_settled:  # once, even if finish ran twice
        return
    ctx.limits_settled = True
    hold = ctx.limits_hold  # kept on the context: the recorders read what was decided
    usage = ctx.usage
    actual = None
    if usage is not None:
        actual = Actual(usage.input_tokens + usage.output_tokens, ctx.cost_nanousd)
    try:
        if hold is not None:
            services.limits.settle(hold, actual)
        if actual is not None and services.policy.current() is not reserved_under:
            _charge_budgets_added(ctx, hold, actual, services)
    except Exception:  # a settle bug must not cost the request its record; the lease frees it
        log.exception("settling limits failed", extra={"fields": {"request_id": ctx.request_id}})


def _charge_budgets_added(
    ctx: RequestContext, hold: Hold | None, actual: Actual, services: Services
) -> None:
    """The policy changed while the request was in flight: budgets it did not reserve on
    (added, put back, or moved by a new `timezone`; every budget, for a team that had
    none) are charged its usage too, in the periods holding its start (where its ledger
    row counts). Without this, a counter rebuilt from the ledger while the request ran
    never counted it: its row was not in the sum, and its settle touched only the
    counters it had reserved on."""
    principal = ctx.principal
    if principal is None or (hold is not None and not hold.is_checked):
        return  # unchecked: the whole charge is owed when the backend is back
    policy = services.policy.current()
    team = policy.teams.get(principal.team)
    if team is None:  # removed: no budget of it to charge
        return
    shape = shape_of(team, principal.subject, ctx.started_at_ms, policy.timezone)
    reserved = set() if hold is None else {rule.key for rule in hold.plan.budgets}
    added = tuple(rule for rule in shape.budgets if rule.key not in reserved)
    if added:
        services.limits.charge_unreserved(team.name, principal.subject, ctx.key, added, actual)


def limits_headers(ctx: RequestContext) -> list[tuple[bytes, bytes]]:
    hold = ctx.limits_hold
    standing = ctx.limits_standing_tokens  # a cache hit's (its hold has no token key)
    if hold is None:
        return [] if standing is None else ratelimit_headers(None, standing)
    return ratelimit_headers(hold.requests, hold.tokens if standing is None else standing)


async def refusal_limits_headers(
    ctx: RequestContext, services: Services
) -> list[tuple[bytes, bytes]]:
    """The x-ratelimit-* headers of a refusal. A request that reserved before it failed:
    its hold's. One refused before the stage ran (a malformed body, a model the team may
    not use, a guardrail block): the team's rate keys as they stand (`standing_headers`).
    Nothing when the stage refused it (its error carries them), for an unknown caller or
    one that left."""
    if ctx.limits_hold is not None:
        return limits_headers(ctx)
    principal = ctx.principal
    if principal is None or ctx.limits_reached or ctx.outcome is Outcome.CLIENT_DISCONNECTED:
        return []
    return await standing_headers(principal, services, ctx.request_id)


async def standing_headers(
    principal: Principal, services: Services, request_id: str
) -> list[tuple[bytes, bytes]]:
    """The x-ratelimit-* headers of an answer that takes nothing (a refusal before the
    stage, `GET /v1/models`): the team's (and user's) rate keys as they stand, read
    without taking anything. Nothing for a team without rate limits, or when the
    backend cannot say."""
    policy = services.policy.current()
    team = policy.teams.get(principal.team)
    if team is None:
        return []
    rates = shape_of(team, principal.subject, services.limits.clock(), policy.timezone).rates
    views = await _standing_views(team.name, principal.subject, rates, services, request_id)
    return [] if views is None else ratelimit_headers(*views)


async def _standing_views(
    team: str, subject: str, rates: tuple[RateRule, ...], services: Services, request_id: str
) -> RateViews | None:
    """The tightest of `rates` of each kind as they stand, read without taking anything;
    None when there are none, or the backend cannot say."""
    if not rates:
        return None
    only_rates = Plan(Shape(team, subject, (), rates, ()), 0, 0, 0)
    try:
        snapshot = await services.limits.snapshot(only_rates)
    except BackendUnavailable:
        return None  # the answer goes out without them: the backend's trouble is not its cause
    except Exception:  # a read bug must not turn a 400 (or a model list) into a 500
        log.exception("reading rate keys failed", extra={"fields": {"request_id": request_id}})
        return None
    return tightest(
        (rule.kind, rule.limit, remaining, reset_ms)
        for rule, (remaining, reset_ms) in zip(rates, snapshot.rates, strict=True)
    )
