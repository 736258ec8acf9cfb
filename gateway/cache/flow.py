"""The cache's part of one request as the pipeline calls it: consult, then keep.

`consult` plans (cache/stage.py), looks up and, on a hit, renders the stored
answer as this client asked for it (JSON or an SSE replay) before the pipeline
commits to it: an entry that cannot be rendered is a miss, whose fresh answer
replaces it. `keep` stores a finished answer; `keep_stream` a completed stream, once
the whole-answer output rules have judged it (its hits are served whole too). Neither
raises for a backend that is down; each counts it on the request
(`ctx.cache_unavailable`) for the metrics.
The one refusal is the client's choice: `only-if-cached` with nothing to serve
(errors.NotCached, raised before any reservation: nothing is held or charged).
Where each call sits, and why there, is in WIRING.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.cache import stage
from gateway.cache.directives import RequestDirectives, read_directives
from gateway.cache.entry import CacheBackend, LookupStatus, Stored
from gateway.cache.errors import NotCached, not_cached
from gateway.cache.freshness import Verdict, decide
from gateway.cache.rules import CacheStatus, effective_policy
from gateway.cache.stage import CachePlan
from gateway.context import RequestContext, now_ms
from gateway.guardrails.decision import Blocked, GuardrailHit
from gateway.guardrails.guards import Guards
from gateway.guardrails.kinds import Where
from gateway.guardrails.stage import guard_output
from gateway.guardrails.texts import asks_for_json
from gateway.limits.estimate import output_capped
from gateway.limits.plan import shape_of
from gateway.policy.compiled import Deployment, ModelRoute, TeamRules
from gateway.providers.base import Endpoint
from gateway.usage.usage import Usage


@dataclass(frozen=True, slots=True)
class Hit:
    """A stored answer, ready to send: no upstream, nothing charged."""

    data: bytes  # the whole-answer JSON, or its SSE replay
    deployment: str  # the label of the deployment that answered when it was stored
    saved: Usage | None  # the tokens it would have cost (None: the answer reported none)
    # The output rules that shaped the stored answer, for this request's records.
    guardrails: tuple[GuardrailHit, ...] = ()
    whole: bytes = b""  # the stored whole-answer JSON (a stream's `data` is its replay)


@dataclass(frozen=True, slots=True)
class Consulted:
    """What the cache said for one request under a cache policy."""

    plan: CachePlan
    status: CacheStatus  # what x-gateway-cache says, once the request is admitted
    hit: Hit | None


async def consult(
    ctx: RequestContext,
    backend: CacheBackend,
    *,
    team: TeamRules,
    route: ModelRoute,
    body: Mapping[str, Any],
    cache_control: Iterable[str],
    subject: str,
    timezone: str,
) -> Consulted | None:
    """None when no policy turns the cache on for this team and model. `subject` and
    `timezone` say whether the limits stage will cap the forwarded body (as_forwarded).
    Raises NotCached when the request says only-if-cached and no stored answer may
    serve it (with no cache policy, none ever may)."""
    if effective_policy(team, route) is None:
        refuse_a_miss(read_directives(cache_control), 0)
        return None
    keyed = as_forwarded(ctx.endpoint, body, team, subject, timezone)
    plan = stage.plan(
        team=team, route=route, endpoint=ctx.endpoint, body=keyed, cache_control=cache_control
    )
    if plan is None:
        return None
    lookup = await stage.look_up(backend, plan, now_ms())
    if lookup is not None and lookup.status is LookupStatus.UNAVAILABLE:
        ctx.cache_unavailable += 1
    status = stage.status_of(plan, lookup)
    if lookup is None or lookup.answer is None:
        _refuse_a_miss_consulted(ctx, plan, status)
        return Consulted(plan, status, None)
    answer = lookup.answer
    try:
        data = stage.render_hit(
            ctx.endpoint,
            answer,
            is_stream=ctx.is_stream,
            body=body,
            checks_output=team.guards.checks_output,
        )
    except ValueError:  # bytes this request cannot be answered with: fetch and replace them
        _refuse_a_miss_consulted(ctx, plan, CacheStatus.MISS)
        return Consulted(plan, CacheStatus.MISS, None)
    hit = Hit(data, answer.deployment, stage.saved_usage(answer), answer.guardrails, answer.body)
    return Consulted(plan, status, hit)


def _refuse_a_miss_consulted(ctx: RequestContext, plan: CachePlan, status: CacheStatus) -> None:
    """refuse_a_miss, for a request under a cache policy: its 504 `not_cached` says
    `status` (its header, ledger row and access line), as any other answer would: `miss`
    after a lookup, `bypass` for a request the cache never serves (the Responses API,
    n > 1, no-store) or a backend that did not answer."""
    try:
        refuse_a_miss(plan.directives, plan.policy.ttl_s)
    except NotCached:
        ctx.cache = status
        raise


def refuse_a_miss(directives: RequestDirectives, ttl_s: int) -> None:
    """Nothing stored may serve the request: raise NotCached if it may not go upstream."""
    if decide(directives, None, ttl_s) is Verdict.REFUSE:
        raise not_cached()


def as_forwarded(
    endpoint: Endpoint, body: Mapping[str, Any], team: TeamRules, subject: str, timezone: str
) -> Mapping[str, Any]:
    """The body as a miss will forward it, to key by: with the output cap the limits
    stage adds when the team's limits spend tokens and the caller set none (the team's
    `max_tokens_default`), so a changed default never serves answers cut under the old."""
    if not shape_of(team, subject, now_ms(), timezone).spends_tokens:
        return body
    return output_capped(endpoint, body, team.max_tokens_default)


def deployment_of(hit: Hit, route: ModelRoute) -> Deployment | None:
    """The route's deployment that answered the stored answer (None if it left the route)."""
    return next((d for d in route.deployments if d.label == hit.deployment), None)


def stores(ctx: RequestContext, plan: CachePlan | None) -> bool:
    """Does this request's finished answer go into the cache? A miss's, and a `no-cache`
    (or `max-age=0`) bypass's, whose fresh answer replaces the entry; never a hit's, nor
    one the cache cannot take (no-store, n > 1) or did not answer the lookup of."""
    if plan is None or not plan.stores or ctx.cache_unavailable:
        return False
    return ctx.cache is CacheStatus.MISS or ctx.cache is CacheStatus.BYPASS


async def keep(
    ctx: RequestContext,
    backend: CacheBackend,
    plan: CachePlan,
    answer: bytes,
    deployment: str,
    fired: tuple[GuardrailHit, ...] | None = None,
) -> Stored | None:
    """Store a successful, complete, already-guarded whole answer, with the usage it
    was charged (`ctx.usage`: call it after the charge) and the output rules that fired
    on it (`fired`; None: the request's own output hits)."""
    if fired is None:
        fired = output_hits(ctx.guardrail_hits) if ctx.guardrail_hits else ()
    stored = await stage.store(backend, plan, answer, deployment, now_ms(), ctx.usage, fired)
    if stored is Stored.UNAVAILABLE:
        ctx.cache_unavailable += 1
    return stored


async def keep_stream(
    ctx: RequestContext,
    backend: CacheBackend,
    plan: CachePlan,
    assembled: bytes,
    deployment: str,
    *,
    guards: Guards,
    body: Mapping[str, Any],
) -> Stored | None:
    """Store a completed stream, assembled from what the upstream sent (before the
    stream's own output scan), as the whole answer a whole-answer client would have got:
    the whole-answer output rules judge it, as `_whole` does. Its hit is served whole
    too, and a stream's scan is not a whole answer's (an unbounded pattern is missed past
    its hold-back; its logprobs are dropped): a block stores nothing, a redaction stores
    the redacted answer (logprobs dropped only where a rule rewrote the text), and the
    rules that fired are the entry's."""
    if not guards.checks_output:
        return await keep(ctx, backend, plan, assembled, deployment)
    payload = orjson.loads(assembled)
    is_json = asks_for_json(ctx.endpoint, body)  # JSON text: redacted so that it stays JSON
    checked = await guard_output(guards, ctx.endpoint, payload, is_json=is_json)
    if isinstance(checked, Blocked):
        return None
    if checked.body is not payload:
        assembled = orjson.dumps(checked.body)
    return await keep(ctx, backend, plan, assembled, deployment, output_hits(checked.hits))


def output_hits(hits: Iterable[GuardrailHit]) -> tuple[GuardrailHit, ...]:
    """The output rules among a request's hits: what shaped its answer (input rules and
    flags are the next request's own: a hit scans its prompt again)."""
    return tuple(hit for hit in hits if hit.where is Where.OUTPUT)


def headers(ctx: RequestContext) -> list[tuple[bytes, bytes]]:
    """`x-gateway-cache` on every answer of a request under a cache policy."""
    return [] if ctx.cache is None else [stage.header(ctx.cache)]
