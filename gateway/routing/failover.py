"""The failover loop: try deployments in routing order until one answers.

Fails over on connect errors, timeouts, 429 and 5xx (`UpstreamFailure`); an
upstream's refusal of the request itself (`UpstreamClientError`) is returned
to the caller at once. Attempts are bounded by `retries`, each by
`attempt_timeout_s`, all by one deadline `timeout_s`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway.errors import UpstreamTimeout, UpstreamUnavailable
from gateway.policy.compiled import Deployment, ModelRoute
from gateway.providers.base import Provider, UpstreamClientError, UpstreamFailure
from gateway.routing.choice import choose_deployment, soonest_recovery
from gateway.routing.health import HEALTHY, Health, record_failure, record_success

T = TypeVar("T")
log = logging.getLogger("gateway.routing")


class HealthBoard:
    """This replica's view of each deployment's health, keyed by `provider/model`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._health: dict[str, Health] = {}

    def of(self, deployment: Deployment) -> Health:
        return self._health.get(deployment.label, HEALTHY)

    def failed(self, deployment: Deployment, route: ModelRoute, failure: UpstreamFailure) -> None:
        self._health[deployment.label] = record_failure(
            self.of(deployment),
            self.clock(),
            failure_threshold=route.routing.failure_threshold,
            cooldown_s=route.routing.cooldown_s,
            retry_after_s=failure.retry_after_s,
        )

    def succeeded(self, deployment: Deployment) -> None:
        if deployment.label in self._health:
            self._health[deployment.label] = record_success(self.of(deployment))


Attempt = Callable[[Provider, Deployment, float], Awaitable[T]]


class Tries:
    """What the failover loop tried, readable even when it was cancelled midway."""

    __slots__ = ("deployments", "failures")

    def __init__(self) -> None:
        self.deployments: list[Deployment] = []
        self.failures: list[UpstreamFailure] = []

    @property
    def count(self) -> int:
        return len(self.deployments)

    @property
    def last_deployment(self) -> Deployment | None:
        return self.deployments[-1] if self.deployments else None


async def call_with_failover(
    route: ModelRoute,
    provider_of: Callable[[Deployment], Provider],
    board: HealthBoard,
    attempt: Attempt[T],
    *,
    tries: Tries,
    request_id: str,
    rand: Callable[[], float] = random.random,
) -> tuple[Deployment, T]:
    """Run `attempt(provider, deployment, deadline)` until one succeeds.

    `deadline` is the request's absolute deadline in `board.clock` seconds (for
    stages that go on after the attempt, like a stream). Raises UpstreamTimeout
    (504) when the deadline passes or every attempt timed out, UpstreamUnavailable
    (502) otherwise, and lets UpstreamClientError through.
    """
    routing = route.routing
    deadline = board.clock() + routing.timeout_s
    tried: list[Deployment] = []
    last: UpstreamFailure | None = None
    for _ in range(routing.retries + 1):
        now = board.clock()
        deployment = choose_deployment(route.deployments, board.of, now, tried, rand())
        if deployment is None and last is not None:
            break  # this request's own failures cooled the rest: report those
        if deployment is None:
            wait = soonest_recovery(route.deployments, board.of, now)
            raise UpstreamUnavailable(
                f"Every deployment of model '{route.alias}' is cooling down after failures.",
                headers={"retry-after": str(max(1, round(wait)))},
            )
        remaining = deadline - now
        if remaining <= 0:
            break
        tries.deployments.append(deployment)
        try:
            async with asyncio.timeout(min(routing.attempt_timeout_s, remaining)):
                result = await attempt(provider_of(deployment), deployment, deadline)
        except TimeoutError:
            last = UpstreamFailure(f"{deployment.label}: attempt timed out", is_timeout=True)
        except UpstreamFailure as failure:
            last = failure
        except UpstreamClientError:
            board.succeeded(deployment)  # it answered; the request was at fault
            raise
        else:
            board.succeeded(deployment)
            return deployment, result
        tries.failures.append(last)
        board.failed(deployment, route, last)
        tried.append(deployment)
        log.warning(
            "upstream attempt failed",
            extra={
                "fields": {
                    "request_id": request_id,
                    "deployment": deployment.label,
                    "status": last.status,
                    "timeout": last.is_timeout,
                    "detail": last.detail[:300],
                }
            },
        )
    if last is None or last.is_timeout or board.clock() >= deadline:
        raise UpstreamTimeout(f"The upstream for model '{route.alias}' did not answer in time.")
    raise UpstreamUnavailable(f"Every deployment of model '{route.alias}' failed.")
