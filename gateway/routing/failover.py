"""The failover loop: try deployments in routing order until one answers.

Fails over on connect errors, timeouts, 5xx and the 4xx that say the deployment
cannot serve (our key refused, 429, a model it does not have: each adapter's
`UpstreamFailure`); an upstream's refusal of the request itself
(`UpstreamClientError`) is returned to the caller at once. Attempts are bounded
by `retries`, each by `attempt_timeout_s`, all by one deadline `timeout_s`. Going back to a
deployment this request already tried waits first (backoff.py), and one
request's failures count once towards a deployment's cooldown. The loop
reports what it did into the caller's `Tries`; it never touches the request
context.
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
from gateway.routing.backoff import back_at, retry_after_hint, retry_wait
from gateway.routing.choice import choose_attempt
from gateway.routing.health import (
    HEALTHY,
    Health,
    bounded_retry_after,
    record_failure,
    record_success,
)
from gateway.routing.tries import Tries

T = TypeVar("T")
log = logging.getLogger("gateway.routing")
# The least of the request's deadline a new attempt needs. A round trip to a real
# upstream takes longer, so an attempt with less is cut before it can answer: yet it
# reaches the upstream, counts as a failure against a healthy deployment (which may
# cool it) and is named in the 504. Timers may fire a hair before the deadline (uvloop),
# leaving such a sliver after an attempt cut by it.
MIN_ATTEMPT_S = 0.05
DETAIL_MAX_CHARS = 300  # of a failure's detail, in the log and on the access line
# Failures a retry of the same deployment cannot mend within one request (our key
# refused, the account out of credit, no such model there): fail over to another
# deployment, never back to this one (a probe saw a single deployment's 401 tried 4 times).
HOPELESS_STATUSES = frozenset({401, 402, 403, 404})


def attempt_budget(remaining_s: float, attempt_timeout_s: float, timeout_s: float) -> float | None:
    """How long the next attempt may run, or None when what is left of the request's
    deadline cannot cover one. A deadline set under the minimum still gets its first."""
    if remaining_s <= 0 or remaining_s < min(MIN_ATTEMPT_S, timeout_s):
        return None
    return min(attempt_timeout_s, remaining_s)


class HealthBoard:
    """This replica's view of each deployment's health, keyed by `provider/model`."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        on_cooldown: Callable[[Deployment], None] | None = None,  # metrics count cooldowns
    ) -> None:
        self.clock = clock
        self._health: dict[str, Health] = {}
        self._on_cooldown = on_cooldown

    def of(self, deployment: Deployment) -> Health:
        return self._health.get(deployment.label, HEALTHY)

    def failed(self, deployment: Deployment, route: ModelRoute, failure: UpstreamFailure) -> None:
        """Count one failure. Callers count at most one per deployment per request."""
        before, now = self.of(deployment), self.clock()
        after = record_failure(
            before,
            now,
            failure_threshold=route.routing.failure_threshold,
            cooldown_s=route.routing.cooldown_s,
            retry_after_s=failure.retry_after_s,
        )
        self._health[deployment.label] = after
        if self._on_cooldown is not None and after.is_cooling(now) and not before.is_cooling(now):
            self._on_cooldown(deployment)

    def succeeded(self, deployment: Deployment) -> None:
        if deployment.label in self._health:
            self._health[deployment.label] = record_success(self.of(deployment))


Attempt = Callable[[Provider, Deployment, float], Awaitable[T]]


class AttemptTimer:
    """Cancel the running task after `within_s`, as `asyncio.timeout` does, at a third of
    its cost (one timer handle, no context-manager machinery): every request pays it."""

    __slots__ = ("_cancelling", "_fired", "_handle", "_task")

    def __init__(self, within_s: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._cancelling = task.cancelling()
        self._fired = False
        self._handle = asyncio.get_running_loop().call_later(within_s, self._fire)

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    def expired(self) -> bool:
        """After a CancelledError: was it this timer (then absorbed) and nothing else?"""
        return self._fired and self._task.uncancel() <= self._cancelling

    def stop(self) -> None:
        self._handle.cancel()


async def call_with_failover(
    route: ModelRoute,
    provider_of: Callable[[Deployment], Provider],
    board: HealthBoard,
    attempt: Attempt[T],
    *,
    tries: Tries,
    request_id: str,
    success_on_answer: bool = True,
    rand: Callable[[], float] = random.random,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> tuple[Deployment, T]:
    """Run `attempt(provider, deployment, deadline)` until one succeeds.

    `success_on_answer=False` (a stream, whose first event is its answer): the answering
    deployment's health is the caller's to record once the stream has ended, as a
    success only if it ended well; its first byte is no success (a deployment that
    dies a few tokens into every stream would have its failures reset each time, and
    never cool down).

    `deadline` is the request's absolute deadline in `board.clock` seconds (for
    stages that go on after the attempt, like a stream). Every attempt is
    recorded in `tries` as it starts and ends. Raises UpstreamTimeout (504) when
    the deadline passes or the last attempt timed out, UpstreamUnavailable (502)
    otherwise, either with `retry-after` when some wait is known; lets
    UpstreamClientError through.
    """
    routing = route.routing
    deadline = board.clock() + routing.timeout_s
    asked_until: dict[Deployment, float] = {}  # an upstream's Retry-After, as a clock time
    candidates = route.deployments
    for _ in range(routing.retries + 1):
        now = board.clock()
        deployment = choose_attempt(candidates, board.of, now, tries.failed_deployments, rand())
        if deployment is None:
            break  # this request's own failures cooled every deployment: report those
        earlier = tries.failures_on(deployment)
        if earlier:
            wait = retry_wait(
                len(earlier),
                rand(),
                retry_after_s=earlier[-1].retry_after_s,
                now=now,
                deadline=deadline,
            )
            if wait is None:
                break  # the pause would outlast the request
            await sleep(wait)
            now = board.clock()
        budget = attempt_budget(deadline - now, routing.attempt_timeout_s, routing.timeout_s)
        if budget is None:
            break
        tries.started(deployment)
        timer = AttemptTimer(budget)
        try:
            result = await attempt(provider_of(deployment), deployment, deadline)
        except asyncio.CancelledError:
            if not timer.expired():
                raise
            failure = UpstreamFailure(f"{deployment.label}: attempt timed out", is_timeout=True)
        except TimeoutError:  # a provider's own timeout
            failure = UpstreamFailure(f"{deployment.label}: attempt timed out", is_timeout=True)
        except UpstreamFailure as caught:
            failure = caught
        except UpstreamClientError:
            tries.answered()
            board.succeeded(deployment)  # it answered; the request was at fault
            raise
        else:
            tries.answered()
            if success_on_answer:
                board.succeeded(deployment)
            return deployment, result
        finally:
            timer.stop()
        tries.failed(failure)
        if not earlier and not failure.is_request_sized:
            # One request's retries are one fault seen once: counting each would let a
            # single unlucky request cool a deployment for every other caller. A refusal
            # of the request's size counts none: a team's huge prompts must not cool a
            # shared deployment down for every team (probe p23).
            board.failed(deployment, route, failure)
        asked = bounded_retry_after(failure.retry_after_s)
        if asked is not None:  # the client's retry-after is ours: never a day on their word
            asked_until[deployment] = board.clock() + asked
        log_failed_attempt(request_id, deployment, failure)
        if failure.status in HOPELESS_STATUSES or failure.is_request_sized:
            candidates = tuple(d for d in candidates if d is not deployment)
    raise _refusal(route, board, tries, asked_until, deadline)


def log_failed_attempt(request_id: str, deployment: Deployment, failure: UpstreamFailure) -> None:
    """The operator's line for one failed attempt: before an answer (here), or a stream
    that failed after its first byte (pipeline)."""
    log.warning(
        "upstream attempt failed",
        extra={
            "fields": {
                "request_id": request_id,
                "deployment": deployment.label,
                "status": failure.status,
                "timeout": failure.is_timeout,
                "detail": failure.detail[:DETAIL_MAX_CHARS],
            }
        },
    )


def _refusal(
    route: ModelRoute,
    board: HealthBoard,
    tries: Tries,
    asked_until: dict[Deployment, float],
    deadline: float,
) -> UpstreamTimeout | UpstreamUnavailable:
    """The error for a request no deployment answered, with `retry-after` when known."""
    now = board.clock()
    hint = retry_after_hint(
        (back_at(board.of(d).cooling_until, asked_until.get(d), now) for d in route.deployments),
        now,
    )
    headers = {} if hint is None else {"retry-after": str(hint)}
    failures = tries.failures
    refusal: UpstreamTimeout | UpstreamUnavailable
    if not failures or failures[-1].is_timeout or now >= deadline:
        refusal = UpstreamTimeout(
            f"The upstream for model '{route.alias}' did not answer in time.", headers=headers
        )
    else:
        refusal = UpstreamUnavailable(unavailable_message(route, tries), headers=headers)
    if failures:  # the access line's error_detail: what the last attempt died of
        refusal.detail = failures[-1].detail[:DETAIL_MAX_CHARS]
    return refusal


def unavailable_message(route: ModelRoute, tries: Tries) -> str:
    """The 502's message: true to what was tried (`retries`, or cooldowns, may have left
    deployments untried)."""
    tried, total = len(tries.failed_deployments), len(route.deployments)
    if tried >= total:
        return f"Every deployment of model '{route.alias}' failed."
    return f"No deployment of model '{route.alias}' answered ({tried} of {total} tried)."
