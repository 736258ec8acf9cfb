"""The request context: what one request learned on its way through the pipeline.

Stages fill it in order; the pipeline's `finish` hands it to the record stage
(the access log today; the ledger, metrics and traces later). It holds no prompt
or completion text of its own (`request_body` refers to the body sent upstream, for
the spans' parameters and a log_content team's access line), unless its team's policy
sets `log_content` (`answer_texts`).
`EdgeContext` is its small sibling for every other request
(OAuth, models, admin, unknown paths): enough for the access line, no body, no token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.auth.principal import Principal
from gateway.cache.rules import CacheStatus
from gateway.errors import GatewayError, recorded_code
from gateway.guardrails.decision import GuardrailHit
from gateway.limits.answers import RateView
from gateway.limits.backend import Hold
from gateway.policy.compiled import Deployment, Policy
from gateway.providers.base import Endpoint
from gateway.random_ids import random_hex
from gateway.routing.tries import Try
from gateway.usage.pricing import UnitPrices
from gateway.usage.usage import Usage


class Outcome(StrEnum):
    """How a request ended, as the access line (and later the ledger) records it."""

    OK = "ok"
    REFUSED = "refused"  # the gateway said no (4xx): auth, policy, bad input, upstream 4xx
    UPSTREAM_ERROR = "upstream_error"  # every deployment failed, or the stream broke
    CLIENT_DISCONNECTED = "client_disconnected"
    GATEWAY_ERROR = "gateway_error"  # our own fault: a 5xx the gateway caused
    CANCELLED = "cancelled"  # the server cut it: the shutdown deadline


def outcome_of_status(status: int) -> Outcome:
    """The outcome of a request refused with `status` before any upstream answered."""
    if status < 400:
        return Outcome.OK
    if status == 499:
        return Outcome.CLIENT_DISCONNECTED
    return Outcome.REFUSED if status < 500 else Outcome.GATEWAY_ERROR


def new_request_id() -> str:
    """A request id in the gateway's own form, for a request that brought none (or one
    not sane: gateway/api/edge.py, request_id_of)."""
    return "req_" + random_hex()


def new_request_key() -> str:
    """The gateway's own id for a request: the ledger's idempotency key. Unlike the
    x-request-id (a client may send the same one twice), it never repeats."""
    return random_hex()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class RequestContext:
    request_id: str
    endpoint: Endpoint
    peer: str | None = None  # the caller's address, for the access line (brute force shows)
    started: float = field(default_factory=time.perf_counter)
    key: str = field(default_factory=new_request_key)
    started_at_ms: int = field(default_factory=now_ms)  # wall clock, for the ledger
    principal: Principal | None = None
    model: str | None = None
    is_stream: bool = False
    deployment: Deployment | None = None
    attempts: int = 0
    status: int = 200
    outcome: Outcome = Outcome.OK
    error_code: str | None = None
    error_detail: str | None = None  # what was wrong, for the operator (never a secret)
    usage: Usage | None = None
    prices: UnitPrices | None = None  # what the usage was charged at
    cost_nanousd: int = 0  # exact cost in 1e-9 USD (usage/pricing.py)
    first_byte_s: float | None = None  # streams: when the first event reached the client
    # Guardrail rules that fired (name, action, input/output), never the text they matched.
    guardrail_hits: list[GuardrailHit] = field(default_factory=list)
    limits_hold: Hold | None = None  # limits: what this request reserved (kept for its record)
    limits_policy: Policy | None = None  # the policy it reserved under (settle_limits compares)
    limits_settled: bool = False  # finish settled or released the hold (once)
    limits_reached: bool = False  # the limits stage ran (its hold or refusal has the headers)
    # A cache hit takes no tokens: its x-ratelimit-*-tokens headers are the tightest tpm
    # key as it stood (limits/stage.py).
    limits_standing_tokens: RateView | None = None
    # A stream's end: how it tells its client an error once its status line is out (a
    # Responses stream numbers it after the last event sent); a shutdown cut uses it.
    stream_error_event: Callable[[GatewayError], bytes] | None = None
    # --- telemetry (issue 12): each upstream attempt, and what the answer said of itself ---
    tries: tuple[Try, ...] = ()
    # The body sent upstream (guardrails applied), a reference, read after the answer: its
    # sampling parameters by span builders (in the export thread), its prompt text by the
    # access line when the team sets log_content (logs.content_fields).
    request_body: Mapping[str, Any] | None = None
    response_id: str | None = None  # the upstream's id of its answer
    # --- content logging: only for a team whose policy sets log_content (SPEC §7) ---
    logs_content: bool = False
    # What the client got, after output guardrails (a stream's in pieces); None: not kept.
    answer_texts: list[str] | None = None
    response_model: str | None = None
    finish_reasons: tuple[str, ...] = ()
    # --- response cache (issue 14): hit|miss|bypass (None: no cache policy, no header);
    # a hit's tokens, kept out of `usage` so nothing that charges from `usage` charges a hit;
    # lookups and stores the backend did not answer (the metrics count them).
    cache: CacheStatus | None = None
    saved_usage: Usage | None = None
    cache_unavailable: int = 0

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    @property
    def recorded_usage(self) -> Usage | None:
        """The tokens the request's records show (ledger row, access line, server span):
        its answer's, or a hit's saved ones. What charges reads `usage` alone."""
        return self.usage if self.usage is not None else self.saved_usage

    def end(self, status: int, outcome: Outcome, error_code: str | None = None) -> None:
        self.status, self.outcome = status, outcome
        self.error_code = recorded_code(error_code)  # an upstream's may be any text


@dataclass(slots=True)
class EdgeContext:
    """A request outside the inference path: who, which path, how it ended."""

    request_id: str
    method: str
    path: str
    peer: str | None = None  # the caller's address, for the access line
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    client_id: str | None = None  # a token request's client, known or not (no secret)
    status: int = 200
    outcome: Outcome = Outcome.OK
    error_code: str | None = None
    error_detail: str | None = None

    def end(self, status: int, error_code: str | None = None) -> None:
        self.status = status
        self.error_code = recorded_code(error_code)
        self.outcome = outcome_of_status(status)

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started
