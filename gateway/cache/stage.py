"""The cache stage as the pipeline calls it: plan, look up, render a hit, store.

`plan` is pure: it decides from the grant, the body and `Cache-Control` whether
this request may be answered from the cache and under which key; `look_up` serves
only an entry its directives accept (freshness.decide). `look_up` and
`store` are the thin async calls to the backend; they never raise for a backend
that is down (a lookup then reports UNAVAILABLE and the request goes upstream).
`render_hit` turns a stored whole answer into what this client asked for (JSON,
or SSE with a usage chunk only when asked). See WIRING.md for where each goes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from gateway.cache.directives import NONE, RequestDirectives, read_directives
from gateway.cache.entry import (
    MISS,
    UNAVAILABLE,
    CacheBackend,
    CachedAnswer,
    Lookup,
    LookupStatus,
    Stored,
)
from gateway.cache.freshness import Verdict, decide
from gateway.cache.key import CacheKey, cache_key
from gateway.cache.replay import replay
from gateway.cache.rules import (
    CacheMode,
    CacheStatus,
    effective_policy,
    is_storable,
    uncacheable,
)
from gateway.guardrails.decision import GuardrailHit
from gateway.policy.compiled import CachePolicy, ModelRoute, TeamRules
from gateway.providers.base import Endpoint
from gateway.usage.usage import Usage, usage_from_report

log = logging.getLogger("gateway.cache")
HEADER = b"x-gateway-cache"


@dataclass(frozen=True, slots=True)
class CachePlan:
    """What the cache does for one request under a cache policy."""

    policy: CachePolicy
    key: CacheKey | None  # None: not cacheable (n > 1, Responses API)
    mode: CacheMode
    endpoint: Endpoint
    directives: RequestDirectives = NONE  # the request's Cache-Control, as read

    @property
    def looks_up(self) -> bool:
        return self.key is not None and self.mode is CacheMode.USE

    @property
    def stores(self) -> bool:
        return self.key is not None and self.mode is not CacheMode.BYPASS


def plan(
    *,
    team: TeamRules,
    route: ModelRoute,
    endpoint: Endpoint,
    body: Mapping[str, Any],
    cache_control: Iterable[str],
) -> CachePlan | None:
    """None when no policy turns the cache on for this team and model (no header then).

    `route` is the route the request will take (deployments that can serve the
    endpoint); the team's guardrail profiles enter through `team.guardrails_hash`.
    """
    policy = effective_policy(team, route)
    if policy is None:
        return None
    directives = read_directives(cache_control)
    mode = directives.mode
    if uncacheable(endpoint, body) is not None or mode is CacheMode.BYPASS:
        return CachePlan(policy, None, mode, endpoint, directives)
    key = cache_key(
        team=team.name,
        endpoint=endpoint,
        model=route.alias,
        deployments=route.deployments,
        guardrails=team.guardrails_hash,
        body=body,
    )
    if route.cache is not None:  # the model's own policy: its max_bytes caps its entries
        key = replace(key, pool=route.alias)
    return CachePlan(policy, key, mode, endpoint, directives)


def status_of(plan: CachePlan, lookup: Lookup | None) -> CacheStatus:
    """The x-gateway-cache value: a hit; a miss (looked up, nothing served); bypass when
    the request could not be served from the cache: the client opted out (`no-store`;
    `no-cache` and `max-age=0`, whose fresh answer is still stored), it is not
    cacheable, or the cache is down."""
    if lookup is not None and lookup.status is LookupStatus.HIT:
        return CacheStatus.HIT
    if not plan.looks_up or (lookup is not None and lookup.status is LookupStatus.UNAVAILABLE):
        return CacheStatus.BYPASS
    return CacheStatus.MISS


def header(status: CacheStatus) -> tuple[bytes, bytes]:
    return HEADER, status.value.encode()


async def look_up(backend: CacheBackend, plan: CachePlan, now_ms: int) -> Lookup | None:
    """The stored answer, if the plan looks up; None when it does not. An entry the
    request may not be served is a miss: older than the policy's current ttl_s (it was
    stored under a longer one), or than the request's max-age, or not fresh for its
    min-fresh (freshness.decide)."""
    if plan.key is None or not plan.looks_up:
        return None
    try:
        found = await backend.get(plan.key)
    except Exception:  # a backend bug must cost the request its cache, not its answer
        log.exception("response cache lookup failed")
        backend.unavailable += 1
        return UNAVAILABLE
    answer = found.answer
    if answer is None:
        return found
    verdict = decide(plan.directives, now_ms - answer.stored_at_ms, plan.policy.ttl_s)
    if verdict is not Verdict.SERVE:
        return MISS
    return found


def render_hit(
    endpoint: Endpoint,
    answer: CachedAnswer,
    *,
    is_stream: bool,
    body: Mapping[str, Any],
    checks_output: bool = False,
) -> bytes:
    """The bytes a hit sends: the whole answer, or its replay as an SSE stream. A stream
    of a team with output rules (`checks_output`) carries no logprobs, as its miss's
    would not have (the hold-back decides about text its tokens already spelled)."""
    if not is_stream:
        return answer.body
    options = body.get("stream_options")
    wants_usage = isinstance(options, Mapping) and options.get("include_usage") is True
    return replay(endpoint, answer.body, include_usage=wants_usage, with_logprobs=not checks_output)


def _parsed(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def saved_usage(answer: CachedAnswer) -> Usage | None:
    """The tokens a hit saved: the usage the answer was charged when stored (else, for
    an entry stored without one, the usage its body reports)."""
    if answer.usage is not None:
        return answer.usage
    whole = _parsed(answer.body)
    return usage_from_report(whole.get("usage")) if isinstance(whole, dict) else None


def usage_report(endpoint: Endpoint, usage: Usage) -> dict[str, Any]:
    """`usage` as OpenAI reports it on `endpoint` (embeddings: no completion tokens)."""
    if endpoint == "embeddings":
        return {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens}
    report: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }
    if usage.cached_tokens:
        report["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    if usage.reasoning_tokens:
        report["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return report


async def store(
    backend: CacheBackend,
    plan: CachePlan,
    answer: bytes,
    deployment: str,
    now_ms: int,
    usage: Usage | None = None,
    guardrails: tuple[GuardrailHit, ...] = (),
) -> Stored | None:
    """Keep a successful, complete, already-guarded whole answer; None if the plan
    does not store. Call it after the client has the answer: it adds nothing to its wait.
    An error object or an answer without choices is refused (NOT_AN_ANSWER).

    `usage` is what the request was charged. An answer without a usable report of its
    own (an upstream that reported none: the gateway counted) is stored with that
    usage in its body, so every hit, whole or replayed with `include_usage`, reports it.
    `guardrails` are the output rules that fired on it, for a hit's records.
    """
    if plan.key is None or not plan.stores:
        return None
    whole = _parsed(answer)
    if not is_storable(plan.endpoint, whole):
        return Stored.NOT_AN_ANSWER
    if usage is not None and usage_from_report(whole.get("usage")) is None:
        whole["usage"] = usage_report(plan.endpoint, usage)
        answer = orjson.dumps(whole)
    entry = CachedAnswer(answer, deployment, now_ms, usage, guardrails)
    try:
        return await backend.put(plan.key, entry, plan.policy)
    except Exception:  # as in look_up: never the request's failure
        log.exception("response cache store failed")
        backend.unavailable += 1
        return Stored.UNAVAILABLE
