"""Open the limits service for a settings: Redis when GATEWAY_REDIS_URL is set, else
the in-process backend (valid for one process; `serve --workers N>1` needs Redis)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.limits.backend import LimitsBackend
from gateway.limits.memory import MemoryBackend
from gateway.limits.native import native_state
from gateway.limits.rebuild import after_own_rows, ledger_reader, shared_sums
from gateway.limits.service import Limits
from gateway.settings import Settings

__all__ = ["Limits", "open_limits"]
log = logging.getLogger("gateway.limits")


@asynccontextmanager
async def open_limits(
    settings: Settings,
    engine: AsyncEngine,
    caught_up: Callable[[float], Awaitable[bool]] | None = None,
) -> AsyncIterator[Limits]:
    """`caught_up`: the ledger writer's, awaited before a counter is rebuilt from the
    ledger (rebuild.after_own_rows)."""
    native = native_state()  # say at start whether the stage runs compiled (native.py)
    if native.is_compiled:
        log.info(native.summary)
    else:
        log.warning(native.summary)
    backend: LimitsBackend
    if settings.redis_url:
        from gateway.limits.redis_backend import RedisBackend  # redis only when configured

        backend = RedisBackend.from_url(settings.redis_url)
    else:
        backend = MemoryBackend()
    sums = ledger_reader(engine)
    if caught_up is not None:
        sums = after_own_rows(sums, caught_up)
    limits = Limits(backend, shared_sums(sums))
    try:
        yield limits
    finally:
        await limits.close()
