"""The in-process cache (gateway/cache/memory.py): LRU by bytes, TTL per entry."""

import asyncio

from gateway.cache.entry import CachedAnswer, LookupStatus, Stored, decode, encode
from gateway.cache.key import CacheKey
from gateway.cache.memory import MemoryCache
from gateway.guardrails.decision import GuardrailHit
from gateway.guardrails.kinds import GuardAction, Where
from gateway.policy.compiled import CachePolicy
from gateway.usage.usage import Usage
from tests.support.clock import ManualClock


def answer(size: int = 100) -> CachedAnswer:
    return CachedAnswer(b'{"x":"' + b"a" * size + b'"}', "demo/m", 1)


def key(digest: str, team: str = "search", model: str = "chat") -> CacheKey:
    return CacheKey(team, model, digest.ljust(64, "0"))


def size_of(entry: CachedAnswer) -> int:
    return len(encode(entry)) + 64


def test_a_stored_answer_is_found_until_its_ttl_ends() -> None:
    clock = ManualClock()
    cache = MemoryCache(clock)
    policy = CachePolicy(ttl_s=60, max_bytes=10_000)
    assert cache.lookup(key("a")).status == LookupStatus.MISS
    assert cache.store(key("a"), answer(), policy) == Stored.STORED
    found = cache.lookup(key("a"))
    assert found.status == LookupStatus.HIT and found.answer == answer()
    clock.now += 59.9
    assert cache.lookup(key("a")).status == LookupStatus.HIT
    clock.now += 0.1
    assert cache.lookup(key("a")).status == LookupStatus.MISS
    assert cache.bytes_used("search") == 0  # the expired entry is gone


def test_an_entry_larger_than_max_bytes_is_never_stored() -> None:
    cache = MemoryCache(ManualClock())
    big = answer(500)
    assert cache.store(key("a"), big, CachePolicy(60, size_of(big) - 1)) == Stored.TOO_LARGE
    assert cache.lookup(key("a")).status == LookupStatus.MISS
    assert cache.store(key("a"), big, CachePolicy(60, size_of(big))) == Stored.STORED


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = MemoryCache(ManualClock())
    entry = answer()
    policy = CachePolicy(60, 3 * size_of(entry))
    for name in "abc":
        cache.store(key(name), entry, policy)
    assert cache.lookup(key("a")).status == LookupStatus.HIT  # a is now the newest
    cache.store(key("d"), entry, policy)
    assert [cache.lookup(key(n)).status for n in "abcd"] == [
        LookupStatus.HIT,
        LookupStatus.MISS,
        LookupStatus.HIT,
        LookupStatus.HIT,
    ]
    assert cache.bytes_used("search") == 3 * size_of(entry)


def test_storing_again_replaces_without_counting_twice() -> None:
    cache = MemoryCache(ManualClock())
    policy = CachePolicy(60, 10_000)
    cache.store(key("a"), answer(10), policy)
    cache.store(key("a"), answer(20), policy)
    assert cache.bytes_used("search") == size_of(answer(20))
    assert cache.lookup(key("a")).answer == answer(20)


def test_max_bytes_caps_a_team_across_its_models() -> None:
    """One team filling its cache does not evict another's; a team's models share its
    max_bytes (it was each (team, model)'s, so the cap grew with every model)."""
    cache = MemoryCache(ManualClock())
    entry = answer()
    policy = CachePolicy(60, 2 * size_of(entry))
    for model in ("m1", "m2", "m3"):
        cache.store(key(model, model=model), entry, policy)
    cache.store(key("a", team="ads"), entry, policy)
    assert [cache.lookup(key(m, model=m)).status for m in ("m1", "m2", "m3")] == [
        LookupStatus.MISS,
        LookupStatus.HIT,
        LookupStatus.HIT,
    ]
    assert cache.bytes_used("search") == 2 * size_of(entry)
    assert cache.lookup(key("a", team="ads")).status == LookupStatus.HIT


def test_a_model_with_its_own_policy_has_its_own_pool() -> None:
    """A model's own cache policy bounds each team's entries of that model by its
    max_bytes; they do not evict the team's other entries."""
    cache = MemoryCache(ManualClock())
    entry = answer()
    policy = CachePolicy(60, size_of(entry))
    cache.store(key("a"), entry, policy)
    own = CacheKey("search", "tiny", "b".ljust(64, "0"), pool="tiny")
    cache.store(own, entry, policy)
    assert cache.lookup(key("a")).status == LookupStatus.HIT
    assert cache.lookup(own).status == LookupStatus.HIT
    assert (cache.bytes_used("search"), cache.bytes_used("search", "tiny")) == (
        size_of(entry),
        size_of(entry),
    )


def test_a_smaller_max_bytes_shrinks_the_group_on_the_next_store() -> None:
    cache = MemoryCache(ManualClock())
    entry = answer()
    cache.store(key("a"), entry, CachePolicy(60, 10 * size_of(entry)))
    cache.store(key("b"), entry, CachePolicy(60, 10 * size_of(entry)))
    cache.store(key("c"), entry, CachePolicy(60, size_of(entry)))
    assert [cache.lookup(key(n)).status for n in "abc"] == [
        LookupStatus.MISS,
        LookupStatus.MISS,
        LookupStatus.HIT,
    ]


def test_clear_by_team_by_model_and_all() -> None:
    async def scenario() -> None:
        cache = MemoryCache(ManualClock())
        policy = CachePolicy(60, 10_000)
        for team in ("search", "ads"):
            for model in ("chat", "embed"):
                await cache.put(key("a", team, model), answer(), policy)
        assert await cache.clear(team="search", model="chat") == 1
        assert (await cache.get(key("a", "search", "chat"))).status == LookupStatus.MISS
        assert (await cache.get(key("a", "search", "embed"))).status == LookupStatus.HIT
        assert await cache.clear(model="embed") == 2
        assert await cache.clear(team="ads") == 1
        assert (await cache.get(key("a", "ads", "chat"))).status == LookupStatus.MISS
        await cache.put(key("b"), answer(), policy)
        assert await cache.clear() == 1

    asyncio.run(scenario())


def test_an_entry_survives_encoding() -> None:
    entry = CachedAnswer(b'{"a":\n1}', "p/m", 123)
    assert decode(encode(entry)) == entry


def test_bytes_this_version_did_not_write_decode_to_nothing() -> None:
    for raw in (
        b"",
        b"no newline",
        b"[1]\n{}",
        b'{"deployment":1,"stored_at_ms":1}\n{}',
        b"{bad\n{}",
    ):
        assert decode(raw) is None


def test_an_entry_keeps_its_usage_through_encoding() -> None:
    entry = CachedAnswer(b"{}", "p/m", 1, Usage(5, 6, 1, True, 2, 3))
    assert decode(encode(entry)) == entry
    damaged = encode(entry).replace(b"[5,6,1,true,2,3]", b"[5,-6,1,true,2,3]")
    assert decode(damaged) == CachedAnswer(b"{}", "p/m", 1)


def test_an_entry_keeps_the_output_rules_that_shaped_it_through_encoding() -> None:
    """Redis holds what `encode` writes: a hit read back names the same rules."""
    fired = (
        GuardrailHit("credit_card", GuardAction.REDACT, Where.OUTPUT),
        GuardrailHit("mood", GuardAction.FLAG, Where.OUTPUT),
    )
    entry = CachedAnswer(b"{}", "p/m", 1, None, fired)
    assert decode(encode(entry)) == entry
    assert b'"guardrails"' not in encode(CachedAnswer(b"{}", "p/m", 1))  # none: nothing written
    for damaged in (b'[["credit_card","erase"]]', b'[["credit_card"]]', b'"credit_card"'):
        raw = encode(entry).replace(b'[["credit_card","redact"],["mood","flag"]]', damaged)
        assert decode(raw) == CachedAnswer(b"{}", "p/m", 1)
