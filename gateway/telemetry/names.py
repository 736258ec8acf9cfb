"""Every name the gateway's telemetry uses: span attributes, span names, metric names.

The OpenTelemetry GenAI conventions are still marked Development (REFERENCE.md §3.1):
when they rename something, this module is the one place to follow. Our own
attributes use the `gateway.` prefix (`gen_ai.*` has no team or subject).
Constants and closed sets only; no logic beyond lookups.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

# --- OpenTelemetry GenAI semantic conventions (semantic-conventions-genai) --------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"

# --- general semantic conventions ---------------------------------------------------------
ERROR_TYPE: Final = "error.type"
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
URL_PATH: Final = "url.path"
SERVER_ADDRESS: Final = "server.address"  # client spans: the upstream's host
SERVER_PORT: Final = "server.port"

# --- ours ----------------------------------------------------------------------------------
GATEWAY_REQUEST_ID: Final = "gateway.request.id"
GATEWAY_TEAM: Final = "gateway.team"
GATEWAY_SUBJECT: Final = "gateway.subject"
GATEWAY_CLIENT_ID: Final = "gateway.client_id"
GATEWAY_DEPLOYMENT: Final = "gateway.deployment"
GATEWAY_ATTEMPTS: Final = "gateway.attempts"  # server span: attempts made
GATEWAY_ATTEMPT_NUMBER: Final = "gateway.attempt.number"  # client span: 1, 2, ...
GATEWAY_OUTCOME: Final = "gateway.outcome"
GATEWAY_ERROR_CODE: Final = "gateway.error.code"
GATEWAY_USAGE_ESTIMATED: Final = "gateway.usage.estimated"
GATEWAY_UPSTREAM_STATUS: Final = "gateway.upstream.status_code"
GATEWAY_POLICY_VERSION: Final = "gateway.policy.version"
# Filled from request-context fields other stages add (cost, budget, guardrails).
GATEWAY_COST_USD: Final = "gateway.cost.usd"
GATEWAY_CACHE: Final = "gateway.cache"  # response cache: hit, miss or bypass
GATEWAY_BUDGET_DECISION: Final = "gateway.budget.decision"
GATEWAY_GUARDRAIL_ACTIONS: Final = "gateway.guardrail.actions"

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
INSTRUMENTATION_NAME: Final = "llm-gateway"
SERVICE_NAME: Final = "llm-gateway"

# --- metrics (Prometheus names; `_total` is added to counters by prometheus-client) -------
REQUESTS: Final = "gateway_requests"
TOKENS: Final = "gateway_tokens"
COST_USD: Final = "gateway_cost_usd"
REQUEST_DURATION: Final = "gateway_request_duration_seconds"
TIME_TO_FIRST_TOKEN: Final = "gateway_time_to_first_token_seconds"
UPSTREAM_ATTEMPTS: Final = "gateway_upstream_attempts"
UPSTREAM_FAILOVERS: Final = "gateway_upstream_failovers"
UPSTREAM_COOLDOWNS: Final = "gateway_upstream_cooldowns"
REFUSALS: Final = "gateway_refusals"
GUARDRAIL_ACTIONS: Final = "gateway_guardrail_actions"
CACHE_REQUESTS: Final = "gateway_cache_requests"  # response cache (issue 14)
CACHE_UNAVAILABLE: Final = "gateway_cache_unavailable"
# Served with no limits check: the limits backend (Redis) was down, on_backend_error open.
LIMITS_UNCHECKED: Final = "gateway_limits_unchecked"
POLICY_VERSION: Final = "gateway_policy_version"
LEDGER_QUEUE_ROWS: Final = "gateway_ledger_queue_rows"
LEDGER_SPOOL_BYTES: Final = "gateway_ledger_spool_bytes"

# Label values standing in for anything the policy does not name: a caller's typo of a
# model, a team an external issuer made up. Labels stay bounded by the policy.
OTHER: Final = "other"
NONE: Final = "none"

# Seconds. Requests: 10 ms (refusals) to 5 min (long generations).
DURATION_BUCKETS: Final = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
TTFT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


class TokenDirection(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class AttemptResult(StrEnum):
    """How one upstream attempt ended, as the attempts counter labels it."""

    OK = "ok"  # it gave the answer
    REFUSED = "refused"  # it answered with the caller's own 4xx (not failed over)
    RATE_LIMITED = "rate_limited"  # 429
    SERVER_ERROR = "server_error"  # 5xx
    HTTP_ERROR = "http_error"  # another status worth failing over (401, 403, 408, ...)
    TIMEOUT = "timeout"
    CONNECT_ERROR = "error"  # no status: connection refused, broken body, bad JSON
    CANCELLED = "cancelled"  # the request ended while it ran (client gone, shutdown)


class RefusalKind(StrEnum):
    """Which control said no, told by the error code of a 429."""

    RATE_LIMIT = "rate_limit"
    BUDGET = "budget"


REFUSAL_CODES: Final[dict[str, RefusalKind]] = {
    "rate_limit_exceeded": RefusalKind.RATE_LIMIT,
    "insufficient_quota": RefusalKind.BUDGET,
}

# Our endpoint → `gen_ai.operation.name`.
OPERATION_NAMES: Final[dict[str, str]] = {
    "chat": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "responses": "chat",
}

# Policy provider type → `gen_ai.provider.name` (well-known values where there is one).
PROVIDER_NAMES: Final[dict[str, str]] = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "bedrock": "aws.bedrock",
    "openai-compatible": "openai_compatible",
    "mock": "mock",
}
