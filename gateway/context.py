"""The request context: what one request learned on its way through the pipeline.

Stages fill it in order; the API edge renders from it and the request log
(later the ledger) records it. It holds no prompt or completion text.
`EdgeContext` is its small sibling for every other request (OAuth, models,
admin, unknown paths): enough for the access line, no body, no token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gateway.auth.principal import Principal
from gateway.policy.compiled import Deployment
from gateway.providers.base import Endpoint
from gateway.usage.usage import Usage


@dataclass(slots=True)
class RequestContext:
    request_id: str
    endpoint: Endpoint
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    model: str | None = None
    is_stream: bool = False
    deployment: Deployment | None = None
    attempts: int = 0
    status: int = 200
    # ok | refused | upstream_error | client_disconnected | gateway_error
    # | cancelled (the server cut it: the shutdown deadline)
    outcome: str = "ok"
    error_code: str | None = None
    usage: Usage | None = None
    first_byte_s: float | None = None  # streams: when the first event reached the client

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started


@dataclass(slots=True)
class EdgeContext:
    """A request outside the inference path: who, which path, how it ended."""

    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    client_id: str | None = None  # a token request's client, known or not (no secret)
    status: int = 200
    outcome: str = "ok"  # ok | refused | gateway_error | cancelled
    error_code: str | None = None

    def end(self, status: int, error_code: str | None = None) -> None:
        self.status = status
        self.error_code = error_code
        self.outcome = "ok" if status < 400 else "refused" if status < 500 else "gateway_error"

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started
