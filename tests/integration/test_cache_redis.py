"""The Redis cache backend against the real Redis (gateway/cache/redis_backend.py)."""

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.cache.entry import CachedAnswer, CacheUnavailable, LookupStatus, Stored, encode
from gateway.cache.key import CacheKey
from gateway.cache.redis_backend import RedisCache, clear_pattern, index_keys, redis_key
from gateway.policy.compiled import CachePolicy

POLICY = CachePolicy(ttl_s=60, max_bytes=10_000)
ANSWER = CachedAnswer(b'{"id":"chatcmpl-1","choices":[]}', "demo/m", 1700000000000)


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[RedisCache]:
    backend = RedisCache(redis_url)
    yield backend
    await backend.close()


def unique_team() -> str:
    """A team of its own per test: the Redis is shared with other tests and engineers."""
    return f"t{secrets.token_hex(6)}"


def key(team: str, model: str = "chat", digest: str = "a") -> CacheKey:
    return CacheKey(team, model, digest.ljust(64, "0"))


async def test_a_stored_answer_is_found_by_every_replica(redis_url: str, cache: RedisCache) -> None:
    """Two backends (two replicas) share entries through Redis."""
    team = unique_team()
    assert (await cache.get(key(team))).status == LookupStatus.MISS
    assert await cache.put(key(team), ANSWER, POLICY) == Stored.STORED
    other = RedisCache(redis_url)
    try:
        found = await other.get(key(team))
    finally:
        await other.close()
    assert found.status == LookupStatus.HIT and found.answer == ANSWER
    await cache.clear(team=team)


async def test_each_entry_carries_its_ttl(redis_url: str, cache: RedisCache) -> None:
    team = unique_team()
    await cache.put(key(team), ANSWER, CachePolicy(ttl_s=1, max_bytes=10_000))
    client = Redis.from_url(redis_url)
    try:
        ttl_ms = await client.pttl(redis_key(key(team)))
        assert 0 < ttl_ms <= 1000
        await asyncio.sleep(1.1)
        assert (await cache.get(key(team))).status == LookupStatus.MISS
    finally:
        await client.aclose()


async def test_an_entry_larger_than_max_bytes_is_never_stored(cache: RedisCache) -> None:
    team = unique_team()
    assert await cache.put(key(team), ANSWER, CachePolicy(60, 10)) == Stored.TOO_LARGE
    assert (await cache.get(key(team))).status == LookupStatus.MISS


async def test_keys_keep_a_team_in_one_cluster_slot(cache: RedisCache) -> None:
    """The {team} hash tag; a model alias with ':' never matches another's pattern."""
    assert redis_key(key("search", "a")).startswith("gw:cache:{search}:61:")
    assert clear_pattern("search", "a") == "gw:cache:{search}:61:*"
    assert clear_pattern(None, None) == "gw:cache:{*}:*:*"


def test_the_pool_is_part_of_an_entrys_name() -> None:
    """The same request under the team's pool and under its model's own pool: two names,
    so each lives in exactly one pool's index."""
    team_pool, model_pool = key("search", "a"), CacheKey("search", "a", "a".ljust(64, "0"), "a")
    assert redis_key(team_pool) == f"gw:cache:{{search}}:61:p:{team_pool.digest}"
    assert redis_key(model_pool) == f"gw:cache:{{search}}:61:p61:{model_pool.digest}"


async def test_clear_by_team_and_model(cache: RedisCache) -> None:
    one, two = unique_team(), unique_team()
    for team in (one, two):
        for model in ("a", "a:b", "embed"):
            await cache.put(key(team, model), ANSWER, POLICY)
    assert await cache.clear(team=one, model="a") == 1  # not "a:b"
    assert (await cache.get(key(one, "a:b"))).status == LookupStatus.HIT
    assert (await cache.get(key(two, "a"))).status == LookupStatus.HIT
    assert await cache.clear(team=one) == 2
    assert (await cache.get(key(one, "embed"))).status == LookupStatus.MISS
    assert await cache.clear(team=two) == 3


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_redis_down_is_reported_and_counted_never_raised() -> None:
    """Nothing listens: lookups and stores say unavailable, quickly, and are counted."""
    down = RedisCache(f"redis://127.0.0.1:{unused_port()}/0")
    try:
        started = time.perf_counter()
        assert (await down.get(key("search"))).status == LookupStatus.UNAVAILABLE
        assert await down.put(key("search"), ANSWER, POLICY) == Stored.UNAVAILABLE
        assert (await down.get(key("search"))).status == LookupStatus.UNAVAILABLE
        assert time.perf_counter() - started < 1.0
        assert down.unavailable == 3
        with pytest.raises(CacheUnavailable, match="Redis did not answer"):
            await down.clear(team="search")
    finally:
        await down.close()


async def test_a_hung_redis_costs_a_lookup_at_most_its_timeout() -> None:
    """A server that accepts and never answers: unavailable after the timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    hung = RedisCache(f"redis://127.0.0.1:{port}/0", timeout_s=0.2)
    try:
        started = time.perf_counter()
        assert (await hung.get(key("search"))).status == LookupStatus.UNAVAILABLE
        assert time.perf_counter() - started < 1.0
        assert hung.unavailable == 1
    finally:
        await hung.close()
        listener.close()


async def test_bytes_another_version_wrote_are_a_miss(redis_url: str, cache: RedisCache) -> None:
    team = unique_team()
    client = Redis.from_url(redis_url)
    try:
        await client.set(redis_key(key(team)), b"garbage", px=60_000)
        assert (await cache.get(key(team))).status == LookupStatus.MISS
    finally:
        await client.delete(redis_key(key(team)))
        await client.aclose()


async def index_total(redis_url: str, team: str, pool: str = "") -> tuple[int, int]:
    """(the index's #total, the bytes its live entries really hold)."""
    client = Redis.from_url(redis_url)
    try:
        zset, sizes = index_keys(team, pool)
        total = int(await client.hget(sizes, "#total") or 0)
        members = await client.zrange(zset, 0, -1)
        held = sum([await client.strlen(m) for m in members])
    finally:
        await client.aclose()
    return total, held


async def test_max_bytes_caps_a_team_across_models_and_replicas(
    redis_url: str, cache: RedisCache
) -> None:
    """Entries of three models from two replicas, room for two: the team holds two (the
    soonest-expiring went), and its index's total is what they hold. Another team's
    entries are untouched."""
    team, other = unique_team(), unique_team()
    entry_size = len(encode(ANSWER))
    policy = CachePolicy(ttl_s=60, max_bytes=2 * entry_size)
    replica = RedisCache(redis_url)
    try:
        assert await cache.put(key(other), ANSWER, policy) == Stored.STORED
        for backend, model in ((cache, "m1"), (replica, "m2"), (cache, "m3")):
            assert await backend.put(key(team, model), ANSWER, policy) == Stored.STORED
            await asyncio.sleep(0.005)  # distinct expiries: m1 is the soonest to expire
        found = [(await cache.get(key(team, m))).status for m in ("m1", "m2", "m3")]
        assert found == [LookupStatus.MISS, LookupStatus.HIT, LookupStatus.HIT]
        assert await index_total(redis_url, team) == (2 * entry_size, 2 * entry_size)
        assert (await cache.get(key(other))).status == LookupStatus.HIT
        assert await cache.clear(team=team, model="m2") == 1  # the index follows a clear
        assert await index_total(redis_url, team) == (entry_size, entry_size)
        assert await cache.put(key(team, "m4"), ANSWER, policy) == Stored.STORED
        assert (await cache.get(key(team, "m3"))).status == LookupStatus.HIT
    finally:
        await replica.close()
        await cache.clear(team=team)
        await cache.clear(team=other)


async def test_a_model_with_its_own_policy_has_its_own_cap(
    redis_url: str, cache: RedisCache
) -> None:
    """A model's own policy caps each team's entries of that model, apart from the
    team's other entries."""
    team = unique_team()
    policy = CachePolicy(ttl_s=60, max_bytes=len(encode(ANSWER)))
    own = CacheKey(team, "tiny", "b".ljust(64, "0"), pool="tiny")
    try:
        await cache.put(key(team), ANSWER, policy)
        await cache.put(own, ANSWER, policy)
        assert (await cache.get(key(team))).status == LookupStatus.HIT
        assert (await cache.get(own)).status == LookupStatus.HIT
        assert (await index_total(redis_url, team, "tiny"))[0] == len(encode(ANSWER))
    finally:
        await cache.clear(team=team)
