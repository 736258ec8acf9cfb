"""A clock for tests: it stands still until the test moves it."""

from __future__ import annotations


class ManualClock:
    """Seconds (monotonic or epoch, as the code under test reads them) that change only
    when the test sets `now` or calls `advance`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
