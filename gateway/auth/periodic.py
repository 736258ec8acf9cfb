"""A cache the request path reads from memory, reloaded in the background.

Revoked clients and signing keys both answer from memory and reload from the
database every second; this is the loop they share. A failing reload keeps the
last loaded state (the caller's reload replaces it only on success) and is
logged once, by exception kind only (a driver's message may carry the URL), and
once more when reloads work again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class PeriodicReload:
    """Run `reload` once at `start()`, then every `interval_s` until `stop()`."""

    def __init__(
        self, reload: Callable[[], Awaitable[None]], *, interval_s: float, what: str
    ) -> None:
        self._reload = reload
        self._interval_s = interval_s
        self._what = what  # names the state in logs and the task, e.g. "signing keys"
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self) -> None:
        """The first load is awaited, so a failure reaches the caller (start-up stops)."""
        await self._reload()
        if self._task is None:
            self._task = asyncio.create_task(self._forever(), name=f"reload {self._what}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.reload_once()

    async def reload_once(self) -> None:
        """One background reload: never raises; logs a failure once per outage."""
        try:
            await self._reload()
        except Exception as error:  # any driver error: keep the last state, say so once
            if not self._failing:
                log.warning("cannot reload the %s: %s", self._what, type(error).__name__)
            self._failing = True
        else:
            if self._failing:
                log.info("%s reloaded again", self._what)
            self._failing = False
