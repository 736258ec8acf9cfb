"""The redis-py client the limits and the response cache use: fail fast, never retry,
and wait for a pooled connection rather than fail when a burst wants more at once.

redis-py's plain pool holds at most 100 connections and raises "Too many connections"
at the 101st: a burst of 200 requests that each needed redis-py at once (a budget
period's first requests rebuilding counters, a cache hit each) got 503
`limits_unavailable` and cache bypasses from a healthy Redis. A blocking pool queues
them for a free connection, within the same timeout as the call itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

POOL_CONNECTIONS = 100  # per process and client: Redis's maxclients is 10,000 by default


def redis_client(
    url: str,
    *,
    timeout_s: float,
    connect: Callable[[AbstractConnection], Awaitable[None]] | None = None,
) -> aioredis.Redis:
    """A client (replies as bytes) whose commands and connection waits each give up
    after `timeout_s`. `connect`: each new connection's setup, in place of redis-py's
    own (which it calls first)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_CONNECTIONS,
        timeout=timeout_s,  # waiting for a free connection
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),  # a call that fails is answered now, not waited on
        redis_connect_func=connect,
    )
    return aioredis.Redis.from_pool(pool)
