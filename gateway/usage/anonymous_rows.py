"""How many ledger rows callers with no verified token may cause: a bound per address.

SPEC §6 asks for a row per request that reaches the pipeline, refused ones included;
a caller with no credentials at all could then grow the database without end (probe
p26: ~3,000 requests a second, ~170 GB a day from one client). Each address gets a
bucket of BURST rows, refilled at PER_MINUTE; past it, such a refusal is answered (401
as ever, and its access line written) but not stored, and counted. A signed token of
a team the policy lacks is a verified caller: its rows are not bounded here.

The decision (`RowBuckets.allows`) is pure arithmetic on an injected clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from gateway.context import RequestContext

log = logging.getLogger("gateway.ledger")
BURST: Final = 60  # rows an address may cause at once
PER_MINUTE: Final = 60  # and then this many a minute
ADDRESSES_KEPT: Final = 10_000  # more, and the buckets start over
UNKNOWN_PEER = ""  # a caller whose address the server did not give
NOTE_EVERY_S: Final = 60.0  # the warning about rows not stored, at most this often


class RowBuckets:
    """A token bucket per address: `allows(address, now)` takes one row if there is one."""

    def __init__(self, burst: int = BURST, per_minute: int = PER_MINUTE) -> None:
        self.burst = burst
        self.per_minute = per_minute
        self.per_second = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}  # address: (rows left, at)

    def allows(self, address: str, now: float) -> bool:
        left, at = self._buckets.get(address, (float(self.burst), now))
        left = min(float(self.burst), left + max(0.0, now - at) * self.per_second)
        allowed = left >= 1.0
        if allowed:
            left -= 1.0
        if address not in self._buckets and len(self._buckets) >= ADDRESSES_KEPT:
            self._buckets.clear()
        self._buckets[address] = (left, now)
        return allowed


Record = Callable[[RequestContext], None]


class AnonymousRowBound:
    """A ledger recorder that stores a row of a caller with no verified token only
    while its address's bucket allows; the rest are counted (`unrecorded`) and said in
    one warning a minute."""

    def __init__(
        self,
        record: Record,
        buckets: RowBuckets | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._record = record
        self._buckets = buckets or RowBuckets()
        self._clock = clock
        self.unrecorded = 0
        self._noted_at: float | None = None

    def record(self, ctx: RequestContext) -> None:
        if ctx.principal is not None:
            self._record(ctx)
            return
        now = self._clock()
        if self._buckets.allows(ctx.peer or UNKNOWN_PEER, now):
            self._record(ctx)
            return
        self.unrecorded += 1
        if self._noted_at is None or now - self._noted_at >= NOTE_EVERY_S:
            self._noted_at = now
            log.warning(
                "ledger rows of requests with no verified token are past their bound per "
                "address (%d at once, %d a minute): not stored (%d so far); each is still "
                "on the access log",
                self._buckets.burst,
                self._buckets.per_minute,
                self.unrecorded,
            )
