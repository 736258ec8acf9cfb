"""routing/response_sizes.py's table in Redis: every replica's, one key per response."""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from gateway.redis_client import redis_client
from gateway.routing.response_sizes import entry_name

log = logging.getLogger("gateway.routing")
KEEP_S = 30 * 24 * 3600  # OpenAI keeps a stored response 30 days
REDIS_TIMEOUT_S = 0.25


class RedisSizes:
    """Every replica's table, in the Redis the limits and the cache use."""

    def __init__(self, url: str, timeout_s: float = REDIS_TIMEOUT_S) -> None:
        self._redis = redis_client(url, timeout_s=timeout_s)
        self._writes: set[asyncio.Task[None]] = set()  # held until done: no task is lost

    def remember(self, team: str, label: str, upstream_id: str, tokens: int) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # off the loop (no stream step runs there now): the bound stands
            return
        task = loop.create_task(self._write(entry_name(team, label, upstream_id), tokens))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, name: str, tokens: int) -> None:
        try:
            await self._redis.set(name, tokens, ex=KEEP_S)
        except (RedisError, OSError) as error:  # the bound stands for its follow-ups
            log.warning(
                "could not note a streamed response's size in Redis",
                extra={"fields": {"error": f"{type(error).__name__}: {error}"}},
            )

    async def recall(self, team: str, label: str, upstream_id: str) -> int | None:
        try:
            raw = await self._redis.get(entry_name(team, label, upstream_id))
        except (RedisError, OSError):
            return None
        if not isinstance(raw, bytes) or not raw.isdigit():
            return None
        return int(raw)

    async def close(self) -> None:
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=REDIS_TIMEOUT_S)
        await self._redis.aclose()
