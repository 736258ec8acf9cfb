"""The in-process cache: LRU by bytes, a TTL per entry. One process's memory only.

`max_bytes` caps a team's cache: all of a team's entries stored under its own policy
share one budget of bytes (its `cache.max_bytes`, as in force at the latest store),
evicting the least recently used; a model with a policy of its own bounds each team's
entries of that model by the model's max_bytes. An entry larger than `max_bytes` is
never stored. Expired entries are dropped when met, and evicted first by LRU order
anyway. The clock is a parameter, so tests move time without sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.cache.entry import MISS, CachedAnswer, Lookup, LookupStatus, Stored, encode
from gateway.cache.key import CacheKey
from gateway.policy.compiled import CachePolicy

Pool = tuple[str, str]  # (team, CacheKey.pool): what one max_bytes caps
Entry = tuple[str, str]  # (model, digest) within a pool


@dataclass(slots=True)
class _Slot:
    answer: CachedAnswer
    size: int
    expires_at: float


class _Pool:
    """One team's (or one team's model's) entries, least recently used first."""

    __slots__ = ("entries", "used")

    def __init__(self) -> None:
        self.entries: OrderedDict[Entry, _Slot] = OrderedDict()
        self.used = 0

    def pop(self, entry: Entry) -> _Slot | None:
        slot = self.entries.pop(entry, None)
        if slot is not None:
            self.used -= slot.size
        return slot


class MemoryCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pools: dict[Pool, _Pool] = {}
        self.unavailable = 0  # never: memory is always there

    async def get(self, key: CacheKey) -> Lookup:
        return self.lookup(key)

    def lookup(self, key: CacheKey) -> Lookup:
        pool = self._pools.get((key.team, key.pool))
        entry = (key.model, key.digest)
        slot = pool.entries.get(entry) if pool is not None else None
        if pool is None or slot is None:
            return MISS
        if slot.expires_at <= self._clock():
            pool.pop(entry)
            return MISS
        pool.entries.move_to_end(entry)
        return Lookup(LookupStatus.HIT, slot.answer)

    async def put(self, key: CacheKey, answer: CachedAnswer, policy: CachePolicy) -> Stored:
        return self.store(key, answer, policy)

    def store(self, key: CacheKey, answer: CachedAnswer, policy: CachePolicy) -> Stored:
        size = len(encode(answer)) + len(key.digest)
        if size > policy.max_bytes:
            return Stored.TOO_LARGE
        pool = self._pools.setdefault((key.team, key.pool), _Pool())
        entry = (key.model, key.digest)
        pool.pop(entry)
        pool.entries[entry] = _Slot(answer, size, self._clock() + policy.ttl_s)
        pool.used += size
        while pool.used > policy.max_bytes:  # a policy change resizes the pool too
            pool.pop(next(iter(pool.entries)))
        return Stored.STORED

    def bytes_used(self, team: str, pool: str = "") -> int:
        found = self._pools.get((team, pool))
        return 0 if found is None else found.used

    async def clear(self, team: str | None = None, model: str | None = None) -> int:
        removed = 0
        for (owner, _), pool in list(self._pools.items()):
            if team is not None and owner != team:
                continue
            for entry in list(pool.entries):
                if model is None or entry[0] == model:
                    pool.pop(entry)
                    removed += 1
        return removed

    async def close(self) -> None:
        self._pools.clear()
