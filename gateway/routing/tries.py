"""What one request's failover loop did, attempt by attempt: routing's answer to its caller.

The loop records into a `Tries` the caller made, as it goes, so the caller can
read it even when the loop was cancelled midway (a client that hung up). Plain
values only; it knows nothing of the request context.
"""

from __future__ import annotations

from typing import NamedTuple

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


class Tries:
    """The attempts of one request, in order."""

    __slots__ = ("_tries",)

    def __init__(self) -> None:
        self._tries: list[Try] = []

    def started(self, deployment: Deployment) -> None:
        self._tries.append(Try(deployment))

    def failed(self, failure: UpstreamFailure) -> None:
        """The attempt last started failed."""
        self._tries[-1] = Try(self._tries[-1].deployment, failure)

    def answered(self) -> None:
        """The attempt last started gave the answer."""
        self._tries[-1] = Try(self._tries[-1].deployment, is_answer=True)

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
