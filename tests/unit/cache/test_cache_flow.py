"""The cache's part of one request: consult and keep (gateway/cache/flow.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.cache import flow
from gateway.cache.entry import (
    UNAVAILABLE,
    CachedAnswer,
    Lookup,
    Stored,
)
from gateway.cache.errors import NotCached
from gateway.cache.key import CacheKey
from gateway.cache.memory import MemoryCache
from gateway.cache.rules import CacheStatus
from gateway.context import RequestContext
from gateway.guardrails.decision import GuardrailHit
from gateway.guardrails.kinds import GuardAction, Where
from gateway.policy.compiled import CachePolicy, Deployment, ModelRoute, RoutingConfig, TeamRules
from gateway.usage.usage import Usage

ON = CachePolicy(ttl_s=60, max_bytes=100_000)
ROUTE = ModelRoute("chat", (Deployment("demo", "m", 1.0, 1),), RoutingConfig(), None)
TEAM = TeamRules("search", True, frozenset(), cache=ON)
BODY: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
WHOLE = orjson.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hey"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
)


class Down:
    """A backend that never answers, as RedisCache reports an unreachable Redis."""

    unavailable = 0

    async def get(self, key: CacheKey) -> Lookup:
        self.unavailable += 1
        return UNAVAILABLE

    async def put(self, key: CacheKey, answer: CachedAnswer, policy: CachePolicy) -> Stored:
        self.unavailable += 1
        return Stored.UNAVAILABLE

    async def clear(self, team: str | None = None, model: str | None = None) -> int:
        return 0

    async def close(self) -> None:
        return None


def context(is_stream: bool = False) -> RequestContext:
    ctx = RequestContext(request_id="r", endpoint="chat")
    ctx.is_stream = is_stream
    return ctx


async def consult(
    ctx: RequestContext, backend: Any, team: TeamRules = TEAM, **changes: Any
) -> flow.Consulted | None:
    parts: dict[str, Any] = {"cache_control": (), "subject": "tester", "timezone": "UTC"}
    parts.update(changes)
    return await flow.consult(ctx, backend, team=team, route=ROUTE, body=BODY, **parts)


async def test_no_policy_no_lookup() -> None:
    assert await consult(context(), Down(), TeamRules("plain", True, frozenset())) is None


async def test_a_stored_answer_is_a_hit_with_the_tokens_it_saves() -> None:
    backend, ctx = MemoryCache(), context()
    looked = await consult(ctx, backend)
    assert looked is not None and (looked.status, looked.hit) == (CacheStatus.MISS, None)
    ctx.cache = looked.status
    assert flow.stores(ctx, looked.plan)
    assert await flow.keep(ctx, backend, looked.plan, WHOLE, "demo/m") is Stored.STORED
    again = await consult(context(), backend)
    assert again is not None and again.status is CacheStatus.HIT and again.hit is not None
    assert (again.hit.data, again.hit.deployment) == (WHOLE, "demo/m")
    assert again.hit.saved == Usage(3, 1)


async def test_a_stream_client_gets_the_replay() -> None:
    backend, ctx = MemoryCache(), context()
    looked = await consult(ctx, backend)
    assert looked is not None
    await flow.keep(ctx, backend, looked.plan, WHOLE, "demo/m")
    again = await consult(context(is_stream=True), backend)
    assert again is not None and again.hit is not None
    assert again.hit.data.startswith(b"data: ") and again.hit.data.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("stored", [b"not json", b"[1, 2]", b'{"choices": "none"}'])
async def test_an_entry_that_cannot_answer_a_stream_is_a_miss(stored: bytes) -> None:
    """Bytes the replay cannot read: a miss, whose fresh answer replaces them."""
    backend, ctx = MemoryCache(), context()
    looked = await consult(ctx, backend)
    assert looked is not None
    assert looked.plan.key is not None  # bytes another version wrote, or damaged
    await backend.put(looked.plan.key, CachedAnswer(stored, "demo/m", 1), ON)
    again = await consult(context(is_stream=True), backend)
    assert again is not None and (again.status, again.hit) == (CacheStatus.MISS, None)


async def test_a_backend_that_is_down_is_a_counted_bypass() -> None:
    backend, ctx = Down(), context()
    looked = await consult(ctx, backend)
    assert looked is not None and (looked.status, looked.hit) == (CacheStatus.BYPASS, None)
    assert ctx.cache_unavailable == 1
    ctx.cache = CacheStatus.MISS  # as after a lookup that missed, before Redis went away
    assert await flow.keep(ctx, backend, looked.plan, WHOLE, "demo/m") is Stored.UNAVAILABLE
    assert ctx.cache_unavailable == 2


@pytest.mark.parametrize(
    ("cache_control", "status", "stores"),
    [
        ((), None, False),  # refused before admission
        ((), CacheStatus.HIT, False),
        ((), CacheStatus.MISS, True),
        (("no-cache",), CacheStatus.BYPASS, True),  # opted out of a stored answer: refreshes it
        (("max-age=0",), CacheStatus.BYPASS, True),
        (("no-store",), CacheStatus.BYPASS, False),
    ],
)
async def test_a_miss_and_a_refresh_are_stored(
    cache_control: tuple[str, ...], status: CacheStatus | None, stores: bool
) -> None:
    ctx = context()
    looked = await consult(ctx, MemoryCache(), cache_control=cache_control)
    assert looked is not None
    if status is CacheStatus.BYPASS:  # what the client's header makes of it
        assert looked.status is status
    ctx.cache = status
    assert flow.stores(ctx, looked.plan) is stores
    assert flow.stores(ctx, None) is False


async def test_nothing_is_stored_after_a_lookup_the_backend_did_not_answer() -> None:
    ctx = context()
    looked = await consult(ctx, Down())
    assert looked is not None and looked.status is CacheStatus.BYPASS
    ctx.cache = looked.status
    assert flow.stores(ctx, looked.plan) is False


def test_the_header_only_under_a_cache_policy() -> None:
    ctx = context()
    assert flow.headers(ctx) == []
    for status in CacheStatus:
        ctx.cache = status
        assert flow.headers(ctx) == [(b"x-gateway-cache", status.value.encode())]


ONLY_IF_CACHED = ("only-if-cached",)


async def test_only_if_cached_with_nothing_stored_is_refused() -> None:
    """504 not_cached, raised before anything is reserved: the pipeline never calls the
    upstream."""
    with pytest.raises(NotCached) as refused:
        await consult(context(), MemoryCache(), cache_control=ONLY_IF_CACHED)
    error = refused.value
    assert (error.status, error.type, error.code, error.param) == (
        504,
        "invalid_request_error",
        "not_cached",
        None,
    )
    assert error.headers == {"x-should-retry": "false"}


async def test_only_if_cached_with_an_entry_is_a_hit() -> None:
    backend, ctx = MemoryCache(), context()
    looked = await consult(ctx, backend)
    assert looked is not None
    await flow.keep(ctx, backend, looked.plan, WHOLE, "demo/m")
    again = await consult(context(), backend, cache_control=ONLY_IF_CACHED)
    assert again is not None and again.status is CacheStatus.HIT and again.hit is not None


@pytest.mark.parametrize(
    "cache_control",
    [
        ("only-if-cached, max-age=0",),
        ("only-if-cached", "no-cache"),
        ("only-if-cached, no-store",),
        ("only-if-cached, min-fresh=61",),  # the ttl is 60 s: no entry is fresh that long
    ],
)
async def test_only_if_cached_refuses_an_entry_the_request_may_not_have(
    cache_control: tuple[str, ...],
) -> None:
    backend, ctx = MemoryCache(), context()
    looked = await consult(ctx, backend)
    assert looked is not None
    await flow.keep(ctx, backend, looked.plan, WHOLE, "demo/m")
    with pytest.raises(NotCached):
        await consult(context(), backend, cache_control=cache_control)


async def test_only_if_cached_is_refused_when_the_backend_is_down() -> None:
    ctx = context()
    with pytest.raises(NotCached):
        await consult(ctx, Down(), cache_control=ONLY_IF_CACHED)
    assert ctx.cache_unavailable == 1


async def test_only_if_cached_is_refused_when_an_entry_cannot_be_rendered() -> None:
    backend, ctx = MemoryCache(), context()
    looked = await consult(ctx, backend)
    assert looked is not None and looked.plan.key is not None
    await backend.put(looked.plan.key, CachedAnswer(b"not json", "demo/m", 1), ON)
    with pytest.raises(NotCached):
        await consult(context(is_stream=True), backend, cache_control=ONLY_IF_CACHED)


async def test_only_if_cached_without_a_cache_policy_is_refused() -> None:
    """No cache for the team and model: nothing is ever stored, so nothing may serve it."""
    plain = TeamRules("plain", True, frozenset())
    with pytest.raises(NotCached):
        await consult(context(), Down(), plain, cache_control=ONLY_IF_CACHED)
    assert await consult(context(), Down(), plain, cache_control=("max-age=0",)) is None


async def test_a_hit_names_the_output_rules_its_stored_answer_was_shaped_by() -> None:
    """The miss's output hits (not its input ones) are stored with the answer; the hit
    carries them for its own ledger row and access line."""
    backend, ctx = MemoryCache(), context()
    looked = await consult(ctx, backend)
    assert looked is not None
    redacted = GuardrailHit("credit_card", GuardAction.REDACT, Where.OUTPUT)
    flagged = GuardrailHit("mood", GuardAction.FLAG, Where.OUTPUT)
    ctx.guardrail_hits += [
        GuardrailHit("email", GuardAction.REDACT, Where.INPUT),
        redacted,
        flagged,
    ]
    await flow.keep(ctx, backend, looked.plan, WHOLE, "demo/m")
    again = await consult(context(), backend)
    assert again is not None and again.hit is not None
    assert again.hit.guardrails == (redacted, flagged)
