"""The pipeline's limits stage: the one place every inference route is estimated,
reserved and settled (pipeline.py calls `reserve_limits` after authorization and
`settle_limits` first thing in `finish`, which runs once per request however it ends).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gateway.limits.answers import ratelimit_headers
from gateway.limits.estimate import estimate
from gateway.limits.plan import Actual, Estimate, RateKind, build_plan

log = logging.getLogger("gateway.limits")

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from gateway.pipeline import Grant
    from gateway.policy.compiled import Policy
    from gateway.services import Services


async def reserve_limits(
    ctx: RequestContext,
    policy: Policy,
    grant: Grant,
    body: Mapping[str, Any],
    services: Services,
    *,
    tokens: bool = True,
) -> None:
    """Reserve the request's estimate on every budget and limit of its team (and user).
    `tokens=False` (a response-cache hit, which spends none): only rpm and concurrency."""
    team = grant.team
    if not (team.budgets or team.limits or team.per_user):
        return  # an unlimited team pays nothing for the stage
    guess = (
        await estimate(ctx.endpoint, body, grant.route, team.max_tokens_default)
        if tokens
        else Estimate(0, 0)
    )
    limits = services.limits
    plan = build_plan(
        team,
        grant.principal.subject,
        guess,
        limits.clock(),
        timezone=policy.timezone,
        deadline_s=grant.route.routing.timeout_s,
    )
    if not tokens:
        requests = tuple(r for r in plan.rates if r.kind is RateKind.REQUESTS)
        plan = replace(plan, budgets=(), rates=requests)
    if not plan.is_empty:
        ctx.limits_hold = await limits.reserve(plan, policy.on_backend_error)


def settle_limits(ctx: RequestContext, services: Services) -> None:
    """Settle the hold to the true usage, or release it all when no upstream answered.
    Charged even when the client hung up: the upstream billed us for what it generated."""
    hold = ctx.limits_hold  # kept on the context: the recorders read what was decided
    if hold is None or ctx.limits_settled:  # once, even if finish ran twice
        return
    ctx.limits_settled = True
    usage = ctx.usage
    actual = None
    if usage is not None:
        actual = Actual(usage.input_tokens + usage.output_tokens, ctx.cost_nanousd)
    try:
        services.limits.settle(hold, actual)
    except Exception:  # a settle bug must not cost the request its record; the lease frees it
        log.exception("settling limits failed", extra={"fields": {"request_id": ctx.request_id}})


def limits_headers(ctx: RequestContext) -> list[tuple[bytes, bytes]]:
    hold = ctx.limits_hold
    return [] if hold is None else ratelimit_headers(hold.rates)
