"""What one request's failover loop did, attempt by attempt: routing's answer to its caller.

The loop records into a `Tries` the caller made, as it goes, so the caller can
read it even when the loop was cancelled midway (a client that hung up). Plain
values only; it knows nothing of the request context.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Protocol

from gateway.policy.compiled import Deployment
from gateway.providers.base import UpstreamFailure


class Try(NamedTuple):
    """One attempt. Neither failed nor the answer: still running, or cancelled.

    A NamedTuple, not a frozen dataclass: the loop builds two per attempt on the
    hot path, and a tuple is several times cheaper to build.
    """

    deployment: Deployment
    failure: UpstreamFailure | None = None
    is_answer: bool = False  # its reply (a result, or its refusal of the request) is the answer
    # When it began (time.perf_counter, like RequestContext.started): the answering
    # deployment's time to first token is measured from it (telemetry).
    started_s: float | None = None


class TryObserver(Protocol):
    """Told of each attempt as it starts and ends (the request's trace: one span each)."""

    def started(self, deployment: Deployment) -> None: ...

    def failed(self, failure: UpstreamFailure) -> None: ...

    def answered(self) -> None: ...


class Tries:
    """The attempts of one request, in order."""

    __slots__ = ("_observer", "_tries")

    def __init__(self, observer: TryObserver | None = None) -> None:
        self._tries: list[Try] = []
        self._observer = observer

    def started(self, deployment: Deployment) -> None:
        self._tries.append(Try(deployment, started_s=time.perf_counter()))
        if self._observer is not None:
            self._observer.started(deployment)

    def failed(self, failure: UpstreamFailure) -> None:
        """The attempt last started failed."""
        last = self._tries[-1]
        self._tries[-1] = Try(last.deployment, failure, started_s=last.started_s)
        if self._observer is not None:
            self._observer.failed(failure)

    def answered(self) -> None:
        """The attempt last started gave the answer."""
        last = self._tries[-1]
        self._tries[-1] = Try(last.deployment, is_answer=True, started_s=last.started_s)
        if self._observer is not None:
            self._observer.answered()

    @property
    def all(self) -> tuple[Try, ...]:
        return tuple(self._tries)

    @property
    def count(self) -> int:
        return len(self._tries)

    @property
    def last_deployment(self) -> Deployment | None:
        return self._tries[-1].deployment if self._tries else None

    @property
    def failures(self) -> tuple[UpstreamFailure, ...]:
        return tuple(t.failure for t in self._tries if t.failure is not None)

    @property
    def failed_deployments(self) -> tuple[Deployment, ...]:
        """Each deployment that failed in this request, once, in order of its first failure."""
        if not self._tries:
            return ()  # the first attempt of every request: skip the work
        return tuple(dict.fromkeys(t.deployment for t in self._tries if t.failure is not None))

    def failures_on(self, deployment: Deployment) -> list[UpstreamFailure]:
        if not self._tries:
            return []
        return [
            t.failure for t in self._tries if t.failure is not None and t.deployment == deployment
        ]
