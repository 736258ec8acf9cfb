"""CPU of the response cache stage alone, per request, on one core.

    .venv/bin/python bench/cache_stage.py [REDIS_URL]

Times `plan` (key included), and plan + lookup + rendering a hit as JSON and as
an SSE replay, against the in-process backend and Redis (default
redis://127.0.0.1:6379/0; its entries are removed afterwards). Process CPU time,
so waiting on Redis is not counted, only the client's work. Quoted in
gateway/cache/WIRING.md until the wired pipeline is measured end to end.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson

from gateway.cache import stage
from gateway.cache.entry import CacheBackend
from gateway.cache.memory import MemoryCache
from gateway.cache.redis_backend import RedisCache
from gateway.policy.compiled import CachePolicy, Deployment, ModelRoute, RoutingConfig, TeamRules

TEAM = TeamRules("bench-cache", True, frozenset(), cache=CachePolicy(60, 10**8))
ROUTE = ModelRoute("chat", (Deployment("demo", "m", 1.0, 1),), RoutingConfig(), None)
BODY: dict[str, Any] = {
    "model": "chat",
    "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Write a haiku about the sea. " * 5},
    ],
    "max_tokens": 100,
    "temperature": 0,
}
WHOLE = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "word " * 100},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 40, "completion_tokens": 100, "total_tokens": 140},
    }
)


def _plan() -> stage.CachePlan:
    found = stage.plan(team=TEAM, route=ROUTE, endpoint="chat", body=BODY, cache_control=())
    assert found is not None
    return found


async def _hit_us(backend: CacheBackend, n: int, *, stream: bool) -> float:
    await stage.store(backend, _plan(), WHOLE, "demo/m", 1)
    started = time.process_time()
    for _ in range(n):
        lookup = await stage.look_up(backend, _plan(), 2)
        assert lookup is not None and lookup.answer is not None
        stage.render_hit("chat", lookup.answer, is_stream=stream, body=BODY)
    return (time.process_time() - started) / n * 1e6


async def main(redis_url: str) -> None:
    started = time.process_time()
    for _ in range(5000):
        _plan()
    print(f"plan (key)              {(time.process_time() - started) / 5000 * 1e6:7.1f} µs")
    memory = MemoryCache()
    print(f"in-process hit, JSON    {await _hit_us(memory, 5000, stream=False):7.1f} µs")
    print(f"in-process hit, SSE     {await _hit_us(memory, 5000, stream=True):7.1f} µs")
    redis = RedisCache(redis_url)
    try:
        print(f"Redis hit, JSON         {await _hit_us(redis, 2000, stream=False):7.1f} µs")
        print(f"Redis hit, SSE          {await _hit_us(redis, 2000, stream=True):7.1f} µs")
    finally:
        await redis.clear(team=TEAM.name)
        await redis.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"))
