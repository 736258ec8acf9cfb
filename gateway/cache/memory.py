"""The in-process cache: LRU by bytes, a TTL per entry. One process's memory only.

Entries are grouped by (team, model); each group holds at most its policy's
`max_bytes` (the policy in force when the entry was stored), evicting the least
recently used. An entry larger than `max_bytes` is never stored. Expired entries
are dropped when met, and evicted first by LRU order anyway. The clock is a
parameter, so tests move time without sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.cache.entry import MISS, CachedAnswer, Lookup, LookupStatus, Stored, encode
from gateway.cache.key import CacheKey
from gateway.policy.compiled import CachePolicy

Group = tuple[str, str]  # (team, model)


@dataclass(slots=True)
class _Slot:
    answer: CachedAnswer
    size: int
    expires_at: float


class _Partition:
    """One (team, model)'s entries, least recently used first."""

    __slots__ = ("entries", "max_bytes", "used")

    def __init__(self) -> None:
        self.entries: OrderedDict[str, _Slot] = OrderedDict()
        self.used = 0
        self.max_bytes = 0

    def pop(self, digest: str) -> None:
        slot = self.entries.pop(digest, None)
        if slot is not None:
            self.used -= slot.size


class MemoryCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._groups: dict[Group, _Partition] = {}
        self.unavailable = 0  # never: memory is always there

    async def get(self, key: CacheKey) -> Lookup:
        return self.lookup(key)

    def lookup(self, key: CacheKey) -> Lookup:
        partition = self._groups.get((key.team, key.model))
        slot = partition.entries.get(key.digest) if partition is not None else None
        if partition is None or slot is None:
            return MISS
        if slot.expires_at <= self._clock():
            partition.pop(key.digest)
            return MISS
        partition.entries.move_to_end(key.digest)
        return Lookup(LookupStatus.HIT, slot.answer)

    async def put(self, key: CacheKey, answer: CachedAnswer, policy: CachePolicy) -> Stored:
        return self.store(key, answer, policy)

    def store(self, key: CacheKey, answer: CachedAnswer, policy: CachePolicy) -> Stored:
        size = len(encode(answer)) + len(key.digest)
        if size > policy.max_bytes:
            return Stored.TOO_LARGE
        partition = self._groups.setdefault((key.team, key.model), _Partition())
        partition.max_bytes = policy.max_bytes  # a policy change resizes the group
        partition.pop(key.digest)
        partition.entries[key.digest] = _Slot(answer, size, self._clock() + policy.ttl_s)
        partition.used += size
        while partition.used > partition.max_bytes:
            oldest = next(iter(partition.entries))
            partition.pop(oldest)
        return Stored.STORED

    def bytes_used(self, team: str, model: str) -> int:
        partition = self._groups.get((team, model))
        return 0 if partition is None else partition.used

    async def clear(self, team: str | None = None, model: str | None = None) -> int:
        removed = 0
        for group in list(self._groups):
            if (team is None or group[0] == team) and (model is None or group[1] == model):
                removed += len(self._groups.pop(group).entries)
        return removed

    async def close(self) -> None:
        self._groups.clear()
