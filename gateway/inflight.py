"""Requests under way, so shutdown can wait for their ends.

At its shutdown deadline uvicorn cancels the requests still running and at once
shuts the lifespan down; their `finally` (close the upstream, settle, record)
still needs the providers and the recorders, so teardown waits here first.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("gateway.inflight")


class InFlight:
    def __init__(self) -> None:
        self._count = 0
        self._idle: asyncio.Event | None = None  # made by drain

    @property
    def count(self) -> int:
        return self._count

    def enter(self) -> None:
        self._count += 1

    def leave(self) -> None:
        self._count -= 1
        if self._count == 0 and self._idle is not None:
            self._idle.set()

    async def drain(self, within_s: float) -> None:
        """Wait (at most `within_s`) for the requests under way to end."""
        if self._count == 0:
            return
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), within_s)
        except TimeoutError:
            log.warning(
                "requests still under way at shutdown; their records are written when they end",
                extra={"fields": {"requests": self._count}},
            )
