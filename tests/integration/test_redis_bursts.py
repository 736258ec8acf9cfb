"""A burst wanting more redis-py connections at once than the pool holds waits for one,
on a healthy Redis: no 503 `limits_unavailable`, no cache bypass (gateway/redis_client.py).
redis-py's plain pool raised "Too many connections" at the 101st: a budget period's first
200 requests got 503s, and a cache hit in a burst became a billed upstream call."""

from __future__ import annotations

import asyncio
import secrets
import time

from gateway.cache.entry import CachedAnswer, LookupStatus, Stored
from gateway.cache.key import CacheKey
from gateway.cache.redis_backend import RedisCache
from gateway.limits.plan import Estimate, build_plan
from gateway.limits.redis_backend import RedisBackend
from gateway.policy.compiled import Budget, BudgetPeriod, CachePolicy, TeamRules
from gateway.policy.schema import LimitsSpec
from gateway.redis_client import POOL_CONNECTIONS

BURST = 2 * POOL_CONNECTIONS + 50


async def test_a_burst_of_usage_views_on_the_limits_store_all_answer(redis_url: str) -> None:
    """Each view reads its counters through redis-py (a pipeline: one connection each)."""
    backend = RedisBackend.from_url(redis_url)
    now = int(time.time() * 1000)
    rules = TeamRules(
        f"burst-{secrets.token_hex(4)}",
        True,
        frozenset(),
        budgets=(Budget(BudgetPeriod.DAY, 10**9, None),),
        limits=LimitsSpec(rpm=10**6, concurrency=10**6),
    )
    plans = [build_plan(rules, f"user-{i}", Estimate(1, 0), now) for i in range(BURST)]
    try:
        snapshots = await asyncio.gather(*(backend.snapshot(plan, now) for plan in plans))
    finally:
        await backend.close()
    assert len(snapshots) == BURST  # none raised BackendUnavailable


async def test_a_burst_of_cache_lookups_all_hit(redis_url: str) -> None:
    cache = RedisCache(redis_url)
    key = CacheKey(f"t{secrets.token_hex(6)}", "chat", "b" * 64)
    answer = CachedAnswer(b'{"id":"chatcmpl-1","choices":[]}', "demo/m", 1700000000000)
    try:
        assert await cache.put(key, answer, CachePolicy(ttl_s=60, max_bytes=10_000)) == (
            Stored.STORED
        )
        found = await asyncio.gather(*(cache.get(key) for _ in range(BURST)))
        await cache.clear(team=key.team)
    finally:
        await cache.close()
    assert [f.status for f in found] == [LookupStatus.HIT] * BURST
    assert cache.unavailable == 0
