"""Which cache backend a process uses: Redis when GATEWAY_REDIS_URL is set (shared
by every replica and worker, like the limiter's), else this process's memory."""

from __future__ import annotations

from gateway.cache.entry import CacheBackend
from gateway.cache.memory import MemoryCache


def open_cache(redis_url: str | None) -> CacheBackend:
    """The backend for these settings; it connects lazily, on first use."""
    if redis_url:
        # redis only when configured: redis-py 8 imports OpenTelemetry when it is installed
        from gateway.cache.redis_backend import RedisCache

        return RedisCache(redis_url)
    return MemoryCache()
