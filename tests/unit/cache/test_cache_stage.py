"""The cache stage's decisions and calls (gateway/cache/stage.py)."""

import asyncio
from dataclasses import replace
from typing import Any

import orjson
import pytest

from gateway.cache import stage
from gateway.cache.entry import (
    MISS,
    UNAVAILABLE,
    CachedAnswer,
    CacheUnavailable,
    Lookup,
    LookupStatus,
    Stored,
)
from gateway.cache.key import CacheKey
from gateway.cache.memory import MemoryCache
from gateway.cache.rules import CacheMode, CacheStatus
from gateway.policy.compiled import (
    CachePolicy,
    Deployment,
    ModelRoute,
    RoutingConfig,
    TeamRules,
    guardrails_hash,
)
from gateway.policy.schema import GuardrailProfile, GuardrailRule
from gateway.usage.usage import Usage

ON = CachePolicy(ttl_s=60, max_bytes=100_000)
ROUTE = ModelRoute("chat", (Deployment("demo", "m", 1.0, 1),), RoutingConfig(), None)
PROFILES = {"baseline": GuardrailProfile(input=[GuardrailRule(detector="email", action="block")])}
CACHED_TEAM = TeamRules(
    "search",
    True,
    frozenset(),
    cache=ON,
    guardrails=("baseline",),
    guardrails_hash=guardrails_hash(["baseline"], PROFILES),
)
PLAIN_TEAM = TeamRules("plain", True, frozenset())
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
                "message": {"role": "assistant", "content": "hello"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
)


def plan(team: TeamRules = CACHED_TEAM, **changes: Any) -> stage.CachePlan | None:
    parts: dict[str, Any] = {
        "team": team,
        "route": ROUTE,
        "endpoint": "chat",
        "body": BODY,
        "cache_control": [],
    }
    parts.update(changes)
    return stage.plan(**parts)


def test_no_policy_no_plan_and_no_header() -> None:
    assert plan(PLAIN_TEAM) is None


def test_a_cacheable_request_looks_up_and_stores() -> None:
    found = plan()
    assert found is not None and found.key is not None
    assert (found.looks_up, found.stores, found.policy) == (True, True, ON)


def test_the_model_policy_turns_it_on_for_a_team_without_one() -> None:
    route = ModelRoute("chat", ROUTE.deployments, RoutingConfig(), None, cache=ON)
    found = plan(PLAIN_TEAM, route=route)
    assert found is not None and found.looks_up


@pytest.mark.parametrize(
    ("changes", "looks_up", "stores"),
    [
        ({"cache_control": ["no-cache"]}, False, True),
        ({"cache_control": ["no-store"]}, False, False),
        ({"body": {**BODY, "n": 2}}, False, False),
        ({"endpoint": "responses", "body": {"model": "chat", "input": "hi"}}, False, False),
    ],
)
def test_what_the_client_and_the_request_allow(
    changes: dict[str, Any], looks_up: bool, stores: bool
) -> None:
    found = plan(**changes)
    assert found is not None
    assert (found.looks_up, found.stores) == (looks_up, stores)


def test_teams_guardrail_profiles_are_in_the_key() -> None:
    """Editing the team's profile makes old entries unreachable."""
    edited = replace(
        CACHED_TEAM, guardrails_hash=guardrails_hash(["baseline"], {"baseline": GuardrailProfile()})
    )
    one, two = plan(), plan(edited)
    assert one is not None and two is not None and one.key != two.key


HIT = Lookup(LookupStatus.HIT, CachedAnswer(WHOLE, "demo/m", 1))
USE = stage.CachePlan(ON, CacheKey("search", "chat", "0" * 64), CacheMode.USE, "chat")
REFRESH = stage.CachePlan(ON, USE.key, CacheMode.REFRESH, "chat")
NO_STORE = stage.CachePlan(ON, None, CacheMode.BYPASS, "chat")
NOT_CACHEABLE = stage.CachePlan(ON, None, CacheMode.USE, "chat")


@pytest.mark.parametrize(
    ("plan_", "lookup", "status"),
    [
        (USE, HIT, CacheStatus.HIT),
        (USE, MISS, CacheStatus.MISS),
        (USE, UNAVAILABLE, CacheStatus.BYPASS),
        (REFRESH, None, CacheStatus.BYPASS),  # no-cache, max-age=0: not served from it
        (NO_STORE, None, CacheStatus.BYPASS),
        (NOT_CACHEABLE, None, CacheStatus.BYPASS),
    ],
)
def test_the_header_value(
    plan_: stage.CachePlan, lookup: Lookup | None, status: CacheStatus
) -> None:
    assert stage.status_of(plan_, lookup) == status
    assert stage.header(status) == (b"x-gateway-cache", status.value.encode())


def test_a_hit_renders_as_json_or_as_a_stream() -> None:
    answer = HIT.answer
    assert answer is not None
    assert stage.render_hit("chat", answer, is_stream=False, body=BODY) == WHOLE
    streamed = stage.render_hit("chat", answer, is_stream=True, body=BODY)
    assert streamed.endswith(b"data: [DONE]\n\n") and b'"usage"' not in streamed
    asked = {**BODY, "stream_options": {"include_usage": True}}
    assert b'"total_tokens":4' in stage.render_hit("chat", answer, is_stream=True, body=asked)


def test_a_hit_saves_the_tokens_its_answer_reported() -> None:
    assert HIT.answer is not None
    assert stage.saved_usage(HIT.answer) == Usage(3, 1)
    assert stage.saved_usage(CachedAnswer(b'{"choices":[]}', "d", 1)) is None
    assert stage.saved_usage(CachedAnswer(b"{bad", "d", 1)) is None


def test_look_up_and_store_follow_the_plan() -> None:
    async def scenario() -> None:
        cache = MemoryCache()
        assert await stage.look_up(cache, REFRESH, 5) is None  # no-cache: nothing looked up
        assert await stage.store(cache, REFRESH, WHOLE, "demo/m", 5) == Stored.STORED
        found = await stage.look_up(cache, USE, 5)
        assert found is not None and found.answer == CachedAnswer(WHOLE, "demo/m", 5)
        assert await stage.store(cache, NO_STORE, WHOLE, "demo/m", 5) is None

    asyncio.run(scenario())


class Broken:
    """A backend with a bug: every call raises."""

    unavailable = 0

    async def get(self, key: CacheKey) -> Lookup:
        raise RuntimeError("bug")

    async def put(self, key: CacheKey, answer: CachedAnswer, policy: CachePolicy) -> Stored:
        raise RuntimeError("bug")

    async def clear(self, team: str | None = None, model: str | None = None) -> int:
        raise CacheUnavailable("bug")

    async def close(self) -> None:
        pass


def test_a_failing_backend_never_fails_the_request() -> None:
    async def scenario() -> None:
        broken = Broken()
        assert await stage.look_up(broken, USE, 5) == UNAVAILABLE
        assert await stage.store(broken, USE, WHOLE, "demo/m", 5) == Stored.UNAVAILABLE
        assert broken.unavailable == 2

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "answer",
    [
        b'{"error": {"message": "overloaded", "type": "server_error"}}',
        b'{"id": "c1", "object": "chat.completion", "choices": []}',
        b'{"id": "c1", "choices": [{"index": 0}], "error": {"message": "partial"}}',
        b"not json",
    ],
)
def test_an_error_object_or_no_choice_is_never_stored(answer: bytes) -> None:
    """An upstream 200 that answers nothing is refused, and the next request misses."""

    async def scenario() -> None:
        cache = MemoryCache()
        assert await stage.store(cache, USE, answer, "demo/m", 5) == Stored.NOT_AN_ANSWER
        found = await stage.look_up(cache, USE, 5)
        assert found is not None and found.status is LookupStatus.MISS

    asyncio.run(scenario())


def test_an_answer_without_usage_is_stored_with_the_charged_usage() -> None:
    """The gateway counted (the upstream reported none): the entry keeps that usage, in
    its body too, so a whole hit and a replay with include_usage both report it."""
    bare = orjson.loads(WHOLE)
    del bare["usage"]
    counted = Usage(3, 7, is_estimated=True)

    async def scenario() -> None:
        cache = MemoryCache()
        assert await stage.store(cache, USE, orjson.dumps(bare), "demo/m", 5, counted) is not None
        found = await stage.look_up(cache, USE, 5)
        assert found is not None and found.answer is not None
        assert stage.saved_usage(found.answer) == counted
        body = orjson.loads(stage.render_hit("chat", found.answer, is_stream=False, body=BODY))
        assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}
        asked = {**BODY, "stream_options": {"include_usage": True}}
        replayed = stage.render_hit("chat", found.answer, is_stream=True, body=asked)
        assert b'"usage":{"prompt_tokens":3,"completion_tokens":7,"total_tokens":10}' in replayed

    asyncio.run(scenario())


def test_an_entry_older_than_the_current_ttl_is_a_miss() -> None:
    """Stored under a long ttl, looked up after the policy lowered it to 60 s: a miss."""

    async def scenario() -> None:
        cache = MemoryCache()
        long = replace(USE, policy=CachePolicy(ttl_s=3600, max_bytes=100_000))
        assert await stage.store(cache, long, WHOLE, "demo/m", 1_000) == Stored.STORED
        assert (await stage.look_up(cache, long, 1_000 + 61_000)) is not None
        for age_ms, status in ((59_999, LookupStatus.HIT), (60_000, LookupStatus.MISS)):
            found = await stage.look_up(cache, USE, 1_000 + age_ms)
            assert found is not None and found.status is status

    asyncio.run(scenario())


def test_the_plan_carries_the_requests_directives() -> None:
    """max-age=0 reads as no-cache (nothing looked up, the fresh answer stored); the
    other directives look up and are weighed against the entry found."""
    found = plan(cache_control=["Max-Age=0"])
    assert found is not None and (found.looks_up, found.stores) == (False, True)
    found = plan(cache_control=["max-age=5", "min-fresh=2, only-if-cached"])
    assert found is not None and (found.looks_up, found.stores) == (True, True)
    assert (found.directives.max_age_s, found.directives.min_fresh_s) == (5, 2)
    assert found.directives.only_if_cached


@pytest.mark.parametrize(
    ("cache_control", "age_ms", "status"),
    [
        ("max-age=5", 5_000, LookupStatus.HIT),
        ("max-age=5", 5_001, LookupStatus.MISS),
        ("min-fresh=50", 10_000, LookupStatus.HIT),
        ("min-fresh=50", 10_001, LookupStatus.MISS),
        ("max-age=abc", 59_999, LookupStatus.HIT),
        ("max-stale=600", 60_000, LookupStatus.MISS),  # never served past the ttl
    ],
)
def test_look_up_serves_only_what_the_request_accepts(
    cache_control: str, age_ms: int, status: LookupStatus
) -> None:
    """An entry too old for max-age, or not fresh long enough for min-fresh, is a miss
    (its fresh answer replaces it)."""

    async def scenario() -> None:
        cache = MemoryCache()
        assert await stage.store(cache, USE, WHOLE, "demo/m", 1_000) == Stored.STORED
        found_plan = plan(cache_control=[cache_control])
        assert found_plan is not None
        asked = replace(USE, mode=found_plan.mode, directives=found_plan.directives)
        found = await stage.look_up(cache, asked, 1_000 + age_ms)
        assert found is not None and found.status is status

    asyncio.run(scenario())
