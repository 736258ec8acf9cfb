"""The Redis cache: shared by every replica, a TTL per entry, one round trip per lookup.

Keys are `gw:cache:{TEAM}:MODELHEX:DIGEST`. The `{TEAM}` hash tag keeps a team's
entries in one Redis Cluster slot, so clearing a team scans one node's slot; the
model alias is hex-encoded because aliases may hold `:` and a pattern for model
`a` must never match model `a:b`. Team names cannot hold braces (policy schema),
so `{*}` matches exactly one team. Redis bounds total memory itself
(`maxmemory` with `volatile-lru`: every entry has a TTL); this backend refuses an
entry larger than the policy's `max_bytes`.

A Redis that does not answer makes `get` and `put` report UNAVAILABLE (counted)
after at most `timeout_s`, never raise: the request is served without the cache.
"""

from __future__ import annotations

import logging
import re

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
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

log = logging.getLogger("gateway.cache")
PREFIX = "gw:cache:"
DEFAULT_TIMEOUT_S = 0.25  # a lookup may cost a request this much when Redis hangs
CLEAR_BATCH = 500
_GLOB_SPECIAL = re.compile(r"[\\*?\[\]]")  # what Redis's glob-style MATCH reads as a pattern


def redis_key(key: CacheKey) -> str:
    return f"{PREFIX}{{{key.team}}}:{key.model.encode().hex()}:{key.digest}"


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
        self._redis = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self.unavailable = 0
        self._down = False

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
        try:
            await self._redis.set(redis_key(key), value, px=policy.ttl_s * 1000)
        except (RedisError, OSError) as error:
            self._unreachable(error)
            return Stored.UNAVAILABLE
        self._up()
        return Stored.STORED

    async def clear(self, team: str | None = None, model: str | None = None) -> int:
        removed = 0
        batch: list[bytes] = []
        try:
            async for name in self._redis.scan_iter(
                match=clear_pattern(team, model), count=CLEAR_BATCH
            ):
                batch.append(name)
                if len(batch) >= CLEAR_BATCH:
                    removed += await self._redis.unlink(*batch)
                    batch.clear()
            if batch:
                removed += await self._redis.unlink(*batch)
        except (RedisError, OSError) as error:
            raise CacheUnavailable(f"Redis did not answer: {type(error).__name__}") from None
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
