"""A problem a loop meets on every round (a database down, polled twice a second)
is logged when it starts, then at most once a minute while it lasts, and once more
when it ends: an outage is a few lines, not a flood."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

REPEAT_EVERY_S = 60.0


class RepeatedProblem:
    def __init__(
        self,
        log: logging.Logger,
        what: str,
        *,
        every_s: float = REPEAT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log, self._what, self._every_s, self._clock = log, what, every_s, clock
        self._count = 0  # rounds that failed since the last success
        self._next_at = 0.0

    def failed(self, error: Exception) -> None:
        self._count += 1
        now = self._clock()
        if self._count > 1 and now < self._next_at:
            return
        self._next_at = now + self._every_s
        again = "" if self._count == 1 else f" (failing for {self._count} rounds)"
        self._log.warning(
            "%s failed%s: %s: %s", self._what, again, type(error).__name__, error,
            extra={"fields": {"failures": self._count}},
        )  # fmt: skip

    def succeeded(self) -> None:
        if self._count:
            self._log.info(
                "%s works again after %d failed rounds", self._what, self._count,
                extra={"fields": {"failures": self._count}},
            )  # fmt: skip
        self._count = 0
