"""The true size of a streamed Responses answer's conversation, once its stream ends.

A streamed answer's id goes out before its usage is known, so it carries an upper
bound (routing/affinity.py): its reservation, the output allowance included. Were
that all a follow-up knew, each streamed turn of an agent loop would add a whole
allowance to the next one's estimate, and a 12-token conversation would soon be
"too large" for its team's tpm. When the stream's last event reports the usage, the
size is remembered here under the response it names; a follow-up counts the smaller
of the two. Forgotten, or not reachable, the bound stands: never less than the truth.

In process: a bounded table, most recent kept. With Redis (GATEWAY_REDIS_URL): one
key per response, `gw:resp:{TEAM}:HEX` (the team's hash tag, as the cache's keys),
kept as long as OpenAI keeps a stored response (30 days); written off the response
path, read with one GET by a follow-up, which a Redis that does not answer costs at
most `timeout_s`, and then the bound.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Protocol

MEMORY_ENTRIES = 100_000  # ~20 MB at most in process: an entry is a short key and an int
PREFIX = "gw:resp:"


class ResponseSizes(Protocol):
    def remember(self, team: str, label: str, upstream_id: str, tokens: int) -> None:
        """Note that the response `upstream_id` of deployment `label` stores `tokens`."""
        ...

    async def recall(self, team: str, label: str, upstream_id: str) -> int | None:
        """What `remember` noted, None when nothing is known (or cannot be asked)."""
        ...

    async def close(self) -> None: ...


def entry_name(team: str, label: str, upstream_id: str) -> str:
    """One name per (team, deployment, upstream id): a digest, so no id can spell another's."""
    digest = hashlib.sha256(f"{len(label)}:{label}\n{upstream_id}".encode()).hexdigest()[:32]
    return f"{PREFIX}{{{team}}}:{digest}"


class MemorySizes:
    """This process's table: the most recent MEMORY_ENTRIES responses."""

    def __init__(self, capacity: int = MEMORY_ENTRIES) -> None:
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self._capacity = capacity

    def remember(self, team: str, label: str, upstream_id: str, tokens: int) -> None:
        name = entry_name(team, label, upstream_id)
        self._sizes[name] = tokens
        self._sizes.move_to_end(name)
        while len(self._sizes) > self._capacity:
            self._sizes.popitem(last=False)

    async def recall(self, team: str, label: str, upstream_id: str) -> int | None:
        return self._sizes.get(entry_name(team, label, upstream_id))

    async def close(self) -> None:
        self._sizes.clear()


def open_sizes(redis_url: str | None) -> ResponseSizes:
    """The table for these settings; Redis connects on first use."""
    if redis_url:
        # redis only when configured: redis-py 8 imports OpenTelemetry when it is installed
        from gateway.routing.response_sizes_redis import RedisSizes

        return RedisSizes(redis_url)
    return MemorySizes()
