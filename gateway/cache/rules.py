"""What the cache may do for one request: pure decisions, no I/O.

Which policy applies (the model's wins over the team's), whether a request is
cacheable at all, and which `x-gateway-cache` value its answer carries. How a
request's `Cache-Control` reads is cache/directives.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from gateway.policy.compiled import CachePolicy, ModelRoute, TeamRules
from gateway.providers.base import Endpoint

# Endpoints whose answers are pure functions of the request. The Responses API is
# not: it stores conversations upstream (`store`, `previous_response_id`).
CACHEABLE_ENDPOINTS: frozenset[Endpoint] = frozenset({"chat", "completions", "embeddings"})


class CacheMode(StrEnum):
    """What the client allows, read from `Cache-Control` as HTTP caches read it
    (directives.RequestDirectives.mode)."""

    USE = "use"  # look up, and store a fresh answer
    REFRESH = "refresh"  # no-cache, max-age=0: look nothing up, store the fresh answer
    BYPASS = "bypass"  # no-store: neither


class CacheStatus(StrEnum):
    """The `x-gateway-cache` header of a cacheable answer."""

    HIT = "hit"
    MISS = "miss"
    BYPASS = "bypass"


class Uncacheable(StrEnum):
    """Why a request under a cache policy is still not answered from the cache."""

    ENDPOINT = "endpoint"  # the Responses API: stateful upstream
    SEVERAL_CHOICES = "several_choices"  # n > 1 asks for distinct samples, not a repeat


def effective_policy(team: TeamRules, route: ModelRoute) -> CachePolicy | None:
    """The model's cache setting if it has one, else the team's; None: no cache.

    The model's wins because whoever runs a model knows whether its answers may be
    served again (a sampling model at temperature 1 may not); a team opts in the
    models that say nothing.
    """
    return route.cache if route.cache is not None else team.cache


def uncacheable(endpoint: Endpoint, body: Mapping[str, Any]) -> Uncacheable | None:
    """None when the request may be answered from the cache, else why not."""
    if endpoint not in CACHEABLE_ENDPOINTS:
        return Uncacheable.ENDPOINT
    choices = body.get("n")
    # bool is an int: `n: true` is the upstream's to refuse, and not ours to repeat.
    if choices is not None and (type(choices) is not int or choices != 1):
        return Uncacheable.SEVERAL_CHOICES
    return None


def is_storable(endpoint: Endpoint, whole: Any) -> bool:
    """May this whole answer (parsed JSON) be kept and served again? Only a success: an
    object with no `error` and at least one choice (one embedding on /v1/embeddings).
    An upstream's 200 carrying an error object, or answering nothing, reaches its client
    once and is never replayed. One rule for whole answers and assembled streams."""
    if not isinstance(whole, dict) or whole.get("error") is not None:
        return False
    answers = whole.get("data" if endpoint == "embeddings" else "choices")
    return isinstance(answers, list) and len(answers) > 0
