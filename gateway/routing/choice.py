"""Which deployment serves the next attempt. Pure: the caller supplies health and randomness.

Among deployments that are not cooling down, the best (lowest) priority wins;
within it, a weighted choice. Deployments already tried in this request are
avoided while an untried one of any priority is available; once all have been
tried, the retry may go back to one (still never to one cooling down).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from gateway.policy.compiled import Deployment
from gateway.routing.health import Health


def choose_deployment(
    deployments: Sequence[Deployment],
    health_of: Callable[[Deployment], Health],
    now: float,
    tried: Collection[Deployment],
    rand: float,
) -> Deployment | None:
    """Pick one, or None when every deployment is cooling down.

    `rand` is uniform in [0, 1).
    """
    available = [d for d in deployments if not health_of(d).is_cooling(now)]
    if not available:
        return None
    untried = [d for d in available if d not in tried]
    pool = untried or available
    best = min(d.priority for d in pool)
    candidates = [d for d in pool if d.priority == best]
    return weighted_pick(candidates, rand)


def weighted_pick(candidates: Sequence[Deployment], rand: float) -> Deployment:
    total = sum(d.weight for d in candidates)
    point = rand * total
    for d in candidates:
        point -= d.weight
        if point < 0:
            return d
    return candidates[-1]  # rand * total rounding up to total


def soonest_recovery(
    deployments: Sequence[Deployment], health_of: Callable[[Deployment], Health], now: float
) -> float:
    """Seconds until the first cooling deployment is back (for a retry-after hint)."""
    return max(0.0, min(health_of(d).cooling_until for d in deployments) - now)
