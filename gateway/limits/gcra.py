"""The rate-limit algorithm: GCRA (generic cell rate algorithm), pure integer arithmetic.

Why GCRA and not a sliding window: one small state per key instead of a log or two
windows; the exact time until a request would fit falls out of it (`retry-after` is
real, not a guess); there is no window edge where twice the rate slips through (a
fixed window's flaw); and settling a token reservation to the true usage is one
addition.

A limit of L per minute is a bucket of L units that drains continuously at L per
minute. The state is `(stamp_ms, level)`: the bucket's fill at `stamp_ms`, in units
times WINDOW_MS (a unit taken adds WINDOW_MS, the bucket drains L a ms, a full bucket
is WINDOW_MS·L), so every step is an exact integer. The level is relative to its
stamp, not an absolute time, so the same numbers stay exact in Redis's Lua (doubles,
exact below 2^53): the Lua script (redis_scripts.py) is this module, line for line.

Reading clamps the level: a refund may leave it negative, read as empty (GCRA's
max(TAT, now)); more than a full bucket is read as full. The level counts units
whatever L is, so one bucket serves a limit edited in the policy: tightened, the
minute's use counts against the new limit, but never more than one minute of it
(1,000 requests then rpm 3 is a full bucket for one minute, not five hours); and a
request billed past its estimate fills the bucket at most (retry-after and the reset
headers never exceed a minute, as OpenAI's do not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

WINDOW_MS: Final = 60_000  # rpm and tpm are per minute


@dataclass(frozen=True, slots=True)
class Bucket:
    stamp_ms: int = 0
    level: int = 0  # scaled ms in use at stamp_ms


@dataclass(frozen=True, slots=True)
class RateState:
    """A key after a decision: what the x-ratelimit-* headers show."""

    is_allowed: bool
    bucket: Bucket  # the new state if allowed, else unchanged
    remaining: int  # units that would fit right now (after this request, if allowed)
    reset_ms: int  # until the bucket is empty again
    retry_after_ms: int  # refused: until this request would fit (-1: it never will); 0 allowed


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def drained(stamp_ms: int, level: int, now_ms: int, limit: int) -> int:
    """The fill at `now_ms` of a bucket filled to `level` at `stamp_ms` (a clock behind
    the stamp drains nothing)."""
    elapsed = max(0, now_ms - stamp_ms)
    return max(0, min(level, WINDOW_MS * limit) - elapsed * limit)


def level_at(bucket: Bucket, now_ms: int, limit: int) -> int:
    return drained(bucket.stamp_ms, bucket.level, now_ms, limit)


def view(level: int, limit: int) -> tuple[int, int]:
    """(remaining units, ms until empty) of a bucket filled to `level`."""
    # Plain comparisons, no calls: it runs for every rate key of every request.
    remaining = (WINDOW_MS * limit - level) // WINDOW_MS
    if remaining > limit:
        remaining = limit
    elif remaining < 0:
        remaining = 0
    return remaining, -(-level // limit)


def state_of(bucket: Bucket, now_ms: int, limit: int) -> tuple[int, int]:
    return view(level_at(bucket, now_ms, limit), limit)


def wait_ms(level: int, limit: int, amount: int) -> int:
    """Until `amount` units fit in a bucket filled to `level`: 0 now, -1 never (the
    request alone is larger than the whole bucket)."""
    if amount > limit:
        return -1
    excess = level + amount * WINDOW_MS - WINDOW_MS * limit
    return _ceil_div(excess, limit) if excess > 0 else 0


def filled(level: int, amount: int) -> int:
    """The level after `amount` units pass."""
    return level + amount * WINDOW_MS


def decide(bucket: Bucket, now_ms: int, limit: int, amount: int) -> RateState:
    """May `amount` units pass now under `limit` per minute?"""
    level = level_at(bucket, now_ms, limit)
    wait = wait_ms(level, limit, amount)
    if wait != 0:
        return RateState(False, bucket, *view(level, limit), wait)
    new_level = filled(level, amount)
    return RateState(True, Bucket(now_ms, new_level), *view(new_level, limit), 0)


def taken(stamp_ms: int, level: int, now_ms: int, limit: int, amount: int) -> int | None:
    """The level after `amount` units pass now (what `decide` stamps now_ms when it
    allows), or None when `decide` refuses: drained, wait_ms and filled in one call,
    with no calls inside, for the per-request path."""
    if amount > limit:
        return None
    full = WINDOW_MS * limit
    if level > full:
        level = full
    elapsed = now_ms - stamp_ms
    if elapsed > 0:
        level -= elapsed * limit
    if level < 0:
        level = 0
    level += amount * WINDOW_MS
    return level if level <= WINDOW_MS * limit else None


def adjusted(level: int, delta: int) -> int:
    """Settle a reservation: `delta` = true units - reserved units (a refund is negative)."""
    return level + delta * WINDOW_MS


def settled_delta(reserved: int, used: int, elapsed_ms: int | None, limit: int) -> int:
    """What settling a reservation of `reserved` units, made `elapsed_ms` ago, to `used`
    units adds to its bucket (`adjusted`'s delta): used - reserved, but a refund never
    more than may be left of the reservation in the bucket. The bucket has drained at
    `limit` a minute since: what drained of the reservation is gone already, and
    refunding it again would take other requests' units out of the bucket (one request
    holding 2,600 of a 3,000 tpm for 15 s, then refunding all but 15, let others pass
    3,720 tokens within a second). The bound counts the drain as the reservation's own
    (it may have been another's, below it): on the safe side. `elapsed_ms` None: no
    bound (a caller that does not know when the reservation was made)."""
    delta = used - reserved
    if delta >= 0 or elapsed_ms is None:
        return delta
    drained = _ceil_div(max(0, elapsed_ms) * limit, WINDOW_MS)
    left = reserved - drained
    if left <= 0:
        return 0
    return delta if delta > -left else -left


def adjust(bucket: Bucket, delta: int) -> Bucket:
    return Bucket(bucket.stamp_ms, adjusted(bucket.level, delta))
