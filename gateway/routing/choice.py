"""Which deployment serves the next attempt. Pure: the caller supplies health and randomness.

Among deployments that are not cooling down, the best (lowest) priority wins;
within it, a weighted choice. Deployments already tried in this request are
avoided while an untried one of any priority is available; once all have been
tried, the retry may go back to one (still never to one cooling down).

Panic mode (Envoy's name): when every deployment is cooling down, a request
that has tried none of them still gets one attempt, on the deployment that
recovers soonest; a cooldown is a guess, and a refusal is certain.
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


def choose_attempt(
    deployments: Sequence[Deployment],
    health_of: Callable[[Deployment], Health],
    now: float,
    tried: Collection[Deployment],
    rand: float,
) -> Deployment | None:
    """The deployment for the next attempt of a request, or None to stop trying.

    As `choose_deployment`, except in panic mode: every deployment cooling down
    and none tried yet by this request gives `soonest_back`. Once the request has
    tried one, a cooling model stops it (its own failures are the answer).
    """
    chosen = choose_deployment(deployments, health_of, now, tried, rand)
    if chosen is None and not tried and deployments:
        return soonest_back(deployments, health_of, rand)
    return chosen


def soonest_back(
    deployments: Sequence[Deployment], health_of: Callable[[Deployment], Health], rand: float
) -> Deployment:
    """The deployment whose cooldown ends first; ties go by priority, then weight."""
    first = min(health_of(d).cooling_until for d in deployments)
    ties = [d for d in deployments if health_of(d).cooling_until == first]
    best = min(d.priority for d in ties)
    return weighted_pick([d for d in ties if d.priority == best], rand)


def weighted_pick(candidates: Sequence[Deployment], rand: float) -> Deployment:
    total = sum(d.weight for d in candidates)
    point = rand * total
    for d in candidates:
        point -= d.weight
        if point < 0:
            return d
    return candidates[-1]  # rand * total rounding up to total
