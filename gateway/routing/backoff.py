"""How long to wait: before retrying a deployment, and what a refused client is told.

Pure: the caller supplies the clock reading and the randomness.

A request that goes back to a deployment it already tried waits first: a
jittered exponential delay (`BACKOFF_BASE_S`, doubling with each earlier
failure there, at most `BACKOFF_CAP_S`), or the upstream's Retry-After when
that is longer (bounded: health.RETRY_AFTER_CAP_S). A wait that would not end
before the request's deadline is not taken: the request stops and answers with
what it has.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from gateway.routing.health import bounded_retry_after

BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
_MAX_DOUBLINGS = 60  # 2.0**60 is far past any cap; larger exponents would overflow a float


def backoff_delay(
    failures: int, rand: float, *, base_s: float = BACKOFF_BASE_S, cap_s: float = BACKOFF_CAP_S
) -> float:
    """Seconds to wait before going back to a deployment that failed `failures` times
    in this request (0 for one not failed yet: failing over to it needs no pause).

    Uniform in [d/2, d) for d = min(cap_s, base_s * 2**(failures - 1)); `rand` is
    uniform in [0, 1). Half of d is fixed so retries are always spaced; the other
    half spreads apart the retries of requests that failed together.
    """
    if failures <= 0:
        return 0.0
    ceiling = min(cap_s, base_s * 2.0 ** min(failures - 1, _MAX_DOUBLINGS))
    return ceiling * (0.5 + 0.5 * rand)


def retry_wait(
    failures: int,
    rand: float,
    *,
    retry_after_s: float | None,
    now: float,
    deadline: float,
) -> float | None:
    """Seconds to wait before the next attempt on a deployment, or None to stop.

    `retry_after_s` is what the deployment's last failure asked for (its
    Retry-After); it wins when longer than the backoff. None when the wait would
    reach the deadline: an attempt that starts at its deadline cannot answer.
    """
    wait = backoff_delay(failures, rand)
    asked = bounded_retry_after(retry_after_s)
    if failures > 0 and asked is not None:
        wait = max(wait, asked)
    if now + wait >= deadline:
        return None
    return wait


def back_at(cooling_until: float, asked_until: float | None, now: float) -> float | None:
    """When a deployment is expected back: the end of its cooldown or of the wait
    its upstream asked for, whichever is later; None when neither is ahead of `now`."""
    ahead = [t for t in (cooling_until, asked_until) if t is not None and t > now]
    return max(ahead) if ahead else None


def retry_after_hint(back: Iterable[float | None], now: float) -> int | None:
    """The `retry-after` seconds for a refused client, when the gateway knows one: its
    own estimate, never an upstream's number passed on.

    `back` holds, per deployment of the model, when it is expected back
    (`back_at`, from its cooldown and the bounded wait its upstream asked for). The
    hint is the soonest of those, rounded up to whole seconds; None when some
    deployment may answer now (nothing known keeps it away) or the model has none.
    """
    soonest: float | None = None
    for when in back:
        if when is None or when <= now:
            return None
        soonest = when if soonest is None else min(soonest, when)
    if soonest is None:
        return None
    return max(1, math.ceil(soonest - now))
