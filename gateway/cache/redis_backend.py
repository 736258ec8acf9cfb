"""The Redis cache: shared by every replica, a TTL per entry, one round trip per call.

Keys are `gw:cache:{TEAM}:MODELHEX:pPOOLHEX:DIGEST`. The `{TEAM}` hash tag keeps a
team's entries in one Redis Cluster slot, so clearing a team scans one node's slot; the
model alias is hex-encoded because aliases may hold `:` and a pattern for model
`a` must never match model `a:b`. Team names cannot hold braces (policy schema),
so `{*}` matches exactly one team. The pool (`CacheKey.pool`: `p` alone for the team's,
`p` and the alias's hex for a model with a policy of its own) is part of the name, so
an entry belongs to exactly one index: when a model gains or loses a `cache:` of its own,
the other pool's entries are never read, refreshed into a second index or evicted by it
(a key in two indexes left phantom bytes in one when the other evicted it). Entries
written before the pool was in the name (`...:MODELHEX:DIGEST`) are no longer looked up;
they expire, or go with an eviction or a clear.

`max_bytes` caps a team's cache (memory.py says which entries share one cap). Each
cap has an index in the team's slot: `gw:cache:{TEAM}:z:POOLHEX`, a ZSET of entry
keys scored by expiry, and `...:h:POOLHEX`, their sizes and the `#total`. One Lua
script stores an entry and keeps the index (drops expired members, adds, evicts the
soonest-expiring until the total fits): one round trip, after the answer was sent.
Every key a call touches shares `{TEAM}`, so it runs on one Cluster node. An entry
larger than `max_bytes` is refused.

A Redis that does not answer makes `get` and `put` report UNAVAILABLE (counted)
after at most `timeout_s`, never raise: the request is served without the cache.
"""

from __future__ import annotations

import logging
import re
import time

from redis.exceptions import RedisError

from gateway.cache.entry import (
    MISS,
    UNAVAILABLE,
    CachedAnswer,
    CacheUnavailable,
    Lookup,
    LookupStatus,
    Stored,
    decode,
    encode,
)
from gateway.cache.key import CacheKey
from gateway.policy.compiled import CachePolicy
from gateway.redis_client import redis_client

log = logging.getLogger("gateway.cache")
PREFIX = "gw:cache:"
DEFAULT_TIMEOUT_S = 0.25  # a lookup may cost a request this much when Redis hangs
CLEAR_BATCH = 500
_GLOB_SPECIAL = re.compile(r"[\\*?\[\]]")  # what Redis's glob-style MATCH reads as a pattern


# KEYS: entry, index ZSET, index HASH. ARGV: value, ttl_ms, now_ms, max_bytes.
STORE_SCRIPT = """
local entry, zset, sizes = KEYS[1], KEYS[2], KEYS[3]
local ttl_ms, now, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local size = string.len(ARGV[1])
local total = tonumber(redis.call('HGET', sizes, '#total') or '0')
local function forget(member)
  local held = redis.call('HGET', sizes, member)
  if held then
    total = total - tonumber(held)
    redis.call('HDEL', sizes, member)
  end
  redis.call('ZREM', zset, member)
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', zset, '-inf', now)) do
  forget(member)
end
forget(entry)
redis.call('SET', entry, ARGV[1], 'PX', ttl_ms)
redis.call('ZADD', zset, now + ttl_ms, entry)
redis.call('HSET', sizes, entry, size)
total = total + size
local position = 0
while total > max_bytes do
  local first = redis.call('ZRANGE', zset, position, position)[1]
  if not first then break end
  if first == entry then
    position = position + 1
  else
    forget(first)
    redis.call('UNLINK', first)
  end
end
redis.call('HSET', sizes, '#total', total)
local last = redis.call('ZRANGE', zset, -1, -1, 'WITHSCORES')[2]
local keep_ms = math.max(tonumber(last) - now, 1)
redis.call('PEXPIRE', zset, keep_ms)
redis.call('PEXPIRE', sizes, keep_ms)
return total
"""
# KEYS: the team pool's ZSET and HASH, the model pool's, then entries to delete. An
# entry is in one of the two (both only for a name written before the pool was in it).
FORGET_SCRIPT = """
local removed = 0
for i = 5, #KEYS do
  removed = removed + redis.call('UNLINK', KEYS[i])
  for j = 1, 3, 2 do
    local held = redis.call('HGET', KEYS[j + 1], KEYS[i])
    if held then
      redis.call('HDEL', KEYS[j + 1], KEYS[i])
      redis.call('ZREM', KEYS[j], KEYS[i])
      redis.call('HINCRBY', KEYS[j + 1], '#total', -tonumber(held))
    end
  end
end
return removed
"""


def redis_key(key: CacheKey) -> str:
    """The entry's name: its team, model and pool (whose index holds it), then digest."""
    pool = f"p{key.pool.encode().hex()}"
    return f"{PREFIX}{{{key.team}}}:{key.model.encode().hex()}:{pool}:{key.digest}"


def index_keys(team: str, pool: str) -> tuple[str, str]:
    """The ZSET (entries by expiry) and HASH (sizes, `#total`) of one cap's index."""
    pool_hex = pool.encode().hex()
    return f"{PREFIX}{{{team}}}:z:{pool_hex}", f"{PREFIX}{{{team}}}:h:{pool_hex}"


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _parts(name: bytes) -> tuple[str, str, str] | None:
    """(team, middle segment, the rest) of one of our key names, else None."""
    team, closing, rest = name.decode(errors="replace").removeprefix(PREFIX)[1:].partition("}:")
    middle, colon, last = rest.partition(":")
    return (team, middle, last) if closing and colon else None


def glob_escaped(text: str) -> str:
    """`text` matching only itself in a SCAN pattern: a team named `b*` (which no policy
    allows) must not clear team `beta`."""
    return _GLOB_SPECIAL.sub(r"\\\g<0>", text)


def clear_pattern(team: str | None, model: str | None) -> str:
    """The SCAN pattern of a team's and/or a model's keys (all of them when neither)."""
    team_part = "*" if team is None else glob_escaped(team)
    model_part = "*" if model is None else model.encode().hex()
    return f"{PREFIX}{{{team_part}}}:{model_part}:*"


class RedisCache:
    def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        # No retries: a lookup that fails is a miss to skip, not a wait to extend.
        self._redis = redis_client(url, timeout_s=timeout_s)
        self.unavailable = 0
        self._down = False
        self._store = self._redis.register_script(STORE_SCRIPT)
        self._forget = self._redis.register_script(FORGET_SCRIPT)

    async def get(self, key: CacheKey) -> Lookup:
        try:
            raw = await self._redis.get(redis_key(key))
        except (RedisError, OSError) as error:
            return self._unreachable(error)
        self._up()
        if not isinstance(raw, bytes):  # None: no entry (the client never decodes to str)
            return MISS
        answer = decode(raw)
        return MISS if answer is None else Lookup(LookupStatus.HIT, answer)

    async def put(self, key: CacheKey, answer: CachedAnswer, policy: CachePolicy) -> Stored:
        value = encode(answer)
        if len(value) > policy.max_bytes:
            return Stored.TOO_LARGE
        zset, sizes = index_keys(key.team, key.pool)
        now_ms = int(time.time() * 1000)
        args: list[bytes | int] = [value, policy.ttl_s * 1000, now_ms, policy.max_bytes]
        try:
            await self._store(keys=[redis_key(key), zset, sizes], args=args)
        except (RedisError, OSError) as error:
            self._unreachable(error)
            return Stored.UNAVAILABLE
        self._up()
        return Stored.STORED

    async def clear(self, team: str | None = None, model: str | None = None) -> int:
        """Entries go with their index kept true (FORGET_SCRIPT, one call per team and
        model in a batch); a whole team's clear takes its indexes too."""
        removed = 0
        entries: dict[tuple[str, str], list[str]] = {}  # (team, model hex) → entry keys
        indexes: list[bytes] = []
        try:
            async for name in self._redis.scan_iter(
                match=clear_pattern(team, model), count=CLEAR_BATCH
            ):
                parts = _parts(name)
                if parts is None:
                    continue
                owner, middle, _ = parts
                if middle in ("z", "h"):
                    indexes.append(name)
                elif _is_hex(middle):
                    entries.setdefault((owner, middle), []).append(name.decode())
                if sum(len(v) for v in entries.values()) >= CLEAR_BATCH:
                    removed += await self._forget_all(entries)
            removed += await self._forget_all(entries)
            if model is None and indexes:
                await self._redis.unlink(*indexes)
        except (RedisError, OSError) as error:
            raise CacheUnavailable(f"Redis did not answer: {type(error).__name__}") from None
        return removed

    async def _forget_all(self, entries: dict[tuple[str, str], list[str]]) -> int:
        removed = 0
        for (owner, model_hex), names in entries.items():
            team_index = index_keys(owner, "")
            model_index = index_keys(owner, bytes.fromhex(model_hex).decode())
            keys = [*team_index, *model_index, *names]
            removed += int(await self._forget(keys=keys))
        entries.clear()
        return removed

    async def close(self) -> None:
        await self._redis.aclose()

    def _unreachable(self, error: BaseException) -> Lookup:
        self.unavailable += 1
        if not self._down:  # one line when it goes, one when it comes back: not one per request
            self._down = True
            log.warning("response cache: Redis unreachable, serving without it: %s", error)
        return UNAVAILABLE

    def _up(self) -> None:
        if self._down:
            self._down = False
            log.info("response cache: Redis reachable again")
