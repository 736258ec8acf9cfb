"""What goes on a span, decided from plain values: the request context, one attempt.

Pure functions, no OpenTelemetry import. `request_attributes` is the one map from the
finished request context to span attributes: a new context field (cost, budget
decision, guardrail actions) gets its line there (in `request_tail`). Never prompt or
completion text, never a token or a key: only names the policy gives, counts, codes
and ids.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

from gateway.context import Outcome, RequestContext
from gateway.policy.compiled import Deployment
from gateway.policy.upstreams import DEFAULT_PORTS
from gateway.providers.base import UpstreamFailure
from gateway.providers.openai_compat import OPENAI_API_BASE
from gateway.telemetry import names
from gateway.telemetry.names import AttemptResult
from gateway.usage.pricing import NANO_PER_USD

AttributeValue = str | bool | int | float | tuple[str, ...]
Attributes = dict[str, AttributeValue]

TRACES_PATH = "/v1/traces"
MODEL_TEXT_MAX = 200  # a model name the caller sent is cut to this in spans


def traces_url(endpoint: str) -> str:
    """GATEWAY_OTLP_ENDPOINT → the OTLP/HTTP traces URL.

    Like OTEL_EXPORTER_OTLP_ENDPOINT, a base URL gets `/v1/traces` appended; a URL
    that already ends in it is used as is. ValueError unless http(s) with a host (and
    a port, if any, that is a port: `:43x8` or `:99999` would fail only at start-up).
    """
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {endpoint!r}")
    if parts.port == 0:  # ValueError above for a port that is no number or past 65535
        raise ValueError(f"not a port: {endpoint!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(TRACES_PATH):
        path += TRACES_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def service_name(env: Mapping[str, str]) -> str:
    """The resource's `service.name`, by OpenTelemetry's rule: OTEL_SERVICE_NAME, else the
    one OTEL_RESOURCE_ATTRIBUTES gives (`key=value` pairs, values percent-decoded, as the
    SDK reads them), else ours."""
    found = env.get("OTEL_SERVICE_NAME", "").strip()
    if found:
        return found
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, equals, value = item.partition("=")
        if equals and key.strip() == "service.name" and value.strip():
            found = unquote(value.strip())  # the last one wins, as in the SDK's map
    return found or names.SERVICE_NAME


def traceparent_head(trace_id: int) -> str:
    """What every `traceparent` of one trace begins with: `00-<trace id>-`."""
    return f"00-{trace_id:032x}-"


def format_traceparent(
    trace_id: int, span_id: int, trace_flags: int, head: str | None = None
) -> str:
    """W3C trace-context `traceparent`, version 00 (`head`: the trace's, made already)."""
    return f"{head or traceparent_head(trace_id)}{span_id:016x}-{trace_flags:02x}"


# W3C trace-context, as OpenTelemetry's propagator reads it: lowercase hex, version ff
# refused, version 00 with nothing after the flags, later versions may add fields.
_TRACEPARENT = re.compile(
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*$"
)


class TraceParent(NamedTuple):
    trace_id: int
    span_id: int
    trace_flags: int


def parse_traceparent(value: str) -> TraceParent | None:
    """A caller's `traceparent`, or None when it is not a valid one (a new trace starts)."""
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return TraceParent(trace_id, span_id, int(flags_hex, 16))


def sampling_bound(ratio: float) -> int:
    """OpenTelemetry's TraceIdRatioBased: a new trace is recorded when the low 64 bits of
    its id are under ratio x 2^64 (computed once, for `is_sampled_new`)."""
    return round(ratio * 2**64)


def is_sampled_new(trace_id: int, bound: int) -> bool:
    """Whether a new trace is recorded, for the `sampling_bound` of the ratio."""
    return (trace_id & 0xFFFFFFFFFFFFFFFF) < bound


def operation_name(endpoint: str) -> str:
    return names.OPERATION_NAMES.get(endpoint, endpoint)


def server_span_name(endpoint: str, model: str | None, error_code: str | None) -> str:
    """`{operation} {model}` (GenAI conventions), or the operation alone when the model
    is not one the policy knows: a name the caller made up would make every span name
    unique and could be 16 MiB long (span names are kept and batched by count)."""
    operation = operation_name(endpoint)
    if model is None or error_code == "model_not_found":
        return operation
    return f"{operation} {model[:MODEL_TEXT_MAX]}"


def provider_name(provider_type: str | None) -> str:
    """`gen_ai.provider.name` of a policy provider type (its own name when unknown)."""
    if provider_type is None:
        return names.OTHER
    return names.PROVIDER_NAMES.get(provider_type, provider_type)


class ServerAddress(NamedTuple):
    """`server.address` and `server.port` of an upstream (REFERENCE.md §3.2)."""

    address: str
    port: int


# Where a provider type without an api_base sends its requests (its own default).
_DEFAULT_BASES = {"openai": OPENAI_API_BASE}


def server_address(provider_type: str | None, api_base: str | None) -> ServerAddress | None:
    """Where a provider's requests go: its api_base's host (no userinfo, path or query; an
    IPv6 address without its brackets) and port (the URL's own, else 443 for https, 80 for
    http). None when it has no address: the mock, or a library's default we do not know.
    Made once per provider (telemetry/__init__.py keeps them), never per request."""
    if provider_type == "mock":
        return None
    base = api_base or _DEFAULT_BASES.get(provider_type or "")
    if not base:
        return None
    try:
        parts = urlsplit(base)
        host, port = parts.hostname, parts.port
    except ValueError:  # the policy checked it; an unreadable one just goes without
        return None
    scheme = parts.scheme.lower()
    if not host or scheme not in DEFAULT_PORTS:
        return None
    return ServerAddress(host, DEFAULT_PORTS[scheme] if port is None else port)


def attempt_result(failure: UpstreamFailure | None, is_answer: bool) -> AttemptResult:
    """How an attempt ended: answered, failed in one of a few ways, or cut short."""
    if failure is None:
        return AttemptResult.OK if is_answer else AttemptResult.CANCELLED
    if failure.is_timeout:
        return AttemptResult.TIMEOUT
    status = failure.status
    if status is None:
        return AttemptResult.CONNECT_ERROR
    if status == 429:
        return AttemptResult.RATE_LIMITED
    return AttemptResult.SERVER_ERROR if status >= 500 else AttemptResult.HTTP_ERROR


def upstream_refusal(ctx: RequestContext) -> int | None:
    """The status of the upstream's own 4xx that the request relayed to its client, else
    None. The answering attempt refused the request: it ended refused with nothing
    charged (a refusal of the gateway's own after an answer, by an output rule, comes
    with the answer's usage charged)."""
    if ctx.outcome is not Outcome.REFUSED or ctx.usage is not None or not 400 <= ctx.status < 499:
        return None
    tries = ctx.tries
    return ctx.status if tries and tries[-1].is_answer else None


def answer_result(ctx: RequestContext) -> AttemptResult:
    """How the attempt that answered ended, told by how the request ended: its stream
    broke (the relay's error event: 502, 504), it refused the request (its own 4xx,
    relayed), else ok (what the gateway did with the answer is not the upstream's)."""
    outcome = ctx.outcome
    if outcome is Outcome.OK:
        return AttemptResult.OK
    if outcome is Outcome.UPSTREAM_ERROR:
        return AttemptResult.TIMEOUT if ctx.error_code == "upstream_timeout" else _BROKEN
    return AttemptResult.REFUSED if upstream_refusal(ctx) is not None else AttemptResult.OK


_BROKEN = AttemptResult.CONNECT_ERROR  # no status of its own: a broken body


def failure_error_type(failure: UpstreamFailure) -> str:
    """`error.type` of a failed attempt: the upstream's status, else what happened."""
    if failure.status is not None and not failure.is_timeout:
        return str(failure.status)
    return attempt_result(failure, is_answer=False).value


def attempt_attributes(
    endpoint: str,
    provider_type: str | None,
    deployment: Deployment,
    number: int,
    is_stream: bool,
    server: ServerAddress | None = None,
) -> Attributes:
    """A client span's attributes as the attempt starts (`server`: the provider's
    `server_address`, None: both attributes left out)."""
    attributes: Attributes = {
        names.GEN_AI_OPERATION_NAME: operation_name(endpoint),
        names.GEN_AI_PROVIDER_NAME: provider_name(provider_type),
        names.GEN_AI_REQUEST_MODEL: deployment.model,
        names.GEN_AI_REQUEST_STREAM: is_stream,
        names.GATEWAY_DEPLOYMENT: deployment.label,
        names.GATEWAY_ATTEMPT_NUMBER: number,
    }
    if server is not None:  # server.port is required exactly when server.address is set
        attributes[names.SERVER_ADDRESS] = server.address
        attributes[names.SERVER_PORT] = server.port
    return attributes


def answer_attributes(ctx: RequestContext) -> Attributes:
    """What the answering attempt learned, known when the request ends, on both its
    client span and the server span. Not the time to the first chunk, whose start
    differs per span (`first_chunk_s`), nor the response id (`response_id_attribute`)."""
    attributes: Attributes = {}
    usage = ctx.recorded_usage  # a hit's saved tokens: it has no client span to share them
    if usage is not None:
        attributes[names.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
        attributes[names.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
        if usage.cached_tokens:
            attributes[names.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cached_tokens
        attributes[names.GATEWAY_USAGE_ESTIMATED] = usage.is_estimated
    if ctx.response_model:
        attributes[names.GEN_AI_RESPONSE_MODEL] = ctx.response_model
    if ctx.finish_reasons:
        attributes[names.GEN_AI_RESPONSE_FINISH_REASONS] = ctx.finish_reasons
    if ctx.outcome is not Outcome.OK:
        attributes[names.ERROR_TYPE] = request_error_type(ctx)
    return attributes


def response_id_attribute(ctx: RequestContext, is_client_span: bool) -> Attributes:
    """`gen_ai.response.id`: the id the upstream gave its answer (chatcmpl-…, resp_…).

    A client span describes the call to the provider, so it carries the provider's id
    (the one its support can look up). The server span carries the id the gateway's
    client saw: the same one, except for the Responses API, whose client sees an id the
    gateway minted (routing/affinity.py) that wraps the upstream's; the server span then
    goes without, rather than name an id its client never saw."""
    response_id = ctx.response_id
    if response_id is None or (not is_client_span and ctx.endpoint == "responses"):
        return {}
    return {names.GEN_AI_RESPONSE_ID: response_id}


def first_chunk_s(ctx: RequestContext, attempt_started_s: float | None) -> float | None:
    """`gen_ai.response.time_to_first_chunk` (streams), in seconds: until the first event
    reached the client, from when the answering attempt began (`attempt_started_s`, a
    `time.perf_counter()` reading like `ctx.started`), or from the request's arrival
    when it is None (the server span; a cache hit). After a failover the earlier
    attempts' time is not the answering deployment's."""
    first_byte_s = ctx.first_byte_s
    if first_byte_s is None or attempt_started_s is None:
        return first_byte_s
    return max(0.0, first_byte_s - (attempt_started_s - ctx.started))


def answer_started_s(ctx: RequestContext) -> float | None:
    """When the attempt that gave the answer began (None: none did, a cache hit)."""
    tries = ctx.tries
    if not tries or not tries[-1].is_answer:
        return None
    return tries[-1].started_s


STOP_SEQUENCES_KEPT = 4  # OpenAI takes at most 4
STOP_SEQUENCE_TEXT_MAX = 64


def request_parameters(body: Mapping[str, Any] | None) -> Attributes:
    """The sampling parameters the request set (REFERENCE.md §3.2, the client span's
    Recommended and Conditionally required `gen_ai.request.*`), from the body sent
    upstream (after guardrails and the team's max_tokens default). A field of the wrong
    type is left out: the edge checked the common ones, not every provider's."""
    attributes: Attributes = {}
    if not body:
        return attributes
    max_tokens = body.get("max_tokens")
    if max_tokens is None:  # chat's newer name, then the Responses API's
        max_tokens = body.get("max_completion_tokens", body.get("max_output_tokens"))
    for name, value in (
        (names.GEN_AI_REQUEST_MAX_TOKENS, max_tokens),
        (names.GEN_AI_REQUEST_SEED, body.get("seed")),
        (names.GEN_AI_REQUEST_TOP_K, body.get("top_k")),  # vLLM's extension
    ):
        if type(value) is int:
            attributes[name] = value
    for name, field in _NUMBER_PARAMETERS:
        value = body.get(field)
        if type(value) is float or type(value) is int:
            attributes[name] = float(value)
    count = body.get("n")
    if type(count) is int and count != 1:  # required only when it is not 1
        attributes[names.GEN_AI_REQUEST_CHOICE_COUNT] = count
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list) and stop:
        kept = tuple(
            s[:STOP_SEQUENCE_TEXT_MAX] for s in stop[:STOP_SEQUENCES_KEPT] if isinstance(s, str)
        )
        if kept:
            attributes[names.GEN_AI_REQUEST_STOP_SEQUENCES] = kept
    return attributes


_NUMBER_PARAMETERS = (
    (names.GEN_AI_REQUEST_TEMPERATURE, "temperature"),
    (names.GEN_AI_REQUEST_TOP_P, "top_p"),
    (names.GEN_AI_REQUEST_FREQUENCY_PENALTY, "frequency_penalty"),
    (names.GEN_AI_REQUEST_PRESENCE_PENALTY, "presence_penalty"),
)


def request_error_type(ctx: RequestContext) -> str:
    return ctx.error_code or ctx.outcome.value


# The server span's attributes that repeat from request to request (no id, no amount),
# in the order `request_head` gives their values: the values are a key that finds the
# attributes' encoding made for an earlier request (telemetry/tracing.py).
_HEAD_NAMES = (
    names.GEN_AI_OPERATION_NAME,
    names.HTTP_RESPONSE_STATUS_CODE,
    names.GATEWAY_OUTCOME,
    names.GATEWAY_ATTEMPTS,
    names.GEN_AI_REQUEST_STREAM,
    names.GATEWAY_TEAM,
    names.GATEWAY_SUBJECT,
    names.GATEWAY_CLIENT_ID,
    names.GEN_AI_REQUEST_MODEL,
    names.GATEWAY_DEPLOYMENT,
    names.GATEWAY_ERROR_CODE,
    names.GATEWAY_POLICY_VERSION,
)
RequestHead = tuple[AttributeValue | None, ...]


def request_head(ctx: RequestContext, policy_version: int | None) -> RequestHead:
    """The values of the server span's repeating attributes (None: the attribute is
    left out), each always of one type at its place: equal tuples, equal attributes."""
    principal = ctx.principal
    deployment = ctx.deployment
    return (
        operation_name(ctx.endpoint),
        ctx.status,
        ctx.outcome.value,
        ctx.attempts,
        ctx.is_stream,
        None if principal is None else principal.team or None,
        None if principal is None else principal.subject,
        None if principal is None else principal.client_id or None,
        None if ctx.model is None else ctx.model[:MODEL_TEXT_MAX],  # the caller's text
        None if deployment is None else deployment.label,
        ctx.error_code or None,
        policy_version,
    )


def head_attributes(head: RequestHead) -> Attributes:
    return {name: value for name, value in zip(_HEAD_NAMES, head, strict=True) if value is not None}


def request_tail(ctx: RequestContext) -> Attributes:
    """The server span's attributes other stages add to the context (cost, budget
    decision, guardrail actions): a new such field gets its line here."""
    attributes = response_id_attribute(ctx, is_client_span=False)
    if ctx.first_byte_s is not None:  # from the request's arrival, as its client waited
        attributes[names.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = ctx.first_byte_s
    if ctx.prices is not None or ctx.saved_usage is not None:  # a hit costs 0
        attributes[names.GATEWAY_COST_USD] = ctx.cost_nanousd / NANO_PER_USD
    if ctx.cache is not None:
        attributes[names.GATEWAY_CACHE] = ctx.cache.value
    decision = budget_decision(ctx)
    if decision is not None:
        attributes[names.GATEWAY_BUDGET_DECISION] = decision
    if ctx.guardrail_hits:  # rule names and actions, never the text they matched
        attributes[names.GATEWAY_GUARDRAIL_ACTIONS] = tuple(
            f"{hit.rule}:{hit.action}:{hit.where}" for hit in ctx.guardrail_hits
        )
    return attributes


def request_attributes(
    ctx: RequestContext, policy_version: int | None, answer: Attributes | None = None
) -> Attributes:
    """The server span's attributes from the finished request context (`answer`: its
    `answer_attributes`, when the caller has them already): the head, the request id,
    the answer, the tail. The one map from context fields to the server span's
    attributes (telemetry/tracing.py sends the same parts, the head's encoding reused)."""
    attributes = head_attributes(request_head(ctx, policy_version))
    attributes[names.GATEWAY_REQUEST_ID] = ctx.request_id
    attributes.update(answer_attributes(ctx) if answer is None else answer)
    attributes.update(request_tail(ctx))
    return attributes


def budget_decision(ctx: RequestContext) -> str | None:
    """What the limits stage decided: reserved, unchecked (backend down, policy open),
    rate_limited or over_budget; None when the team has no limits (or it never got there)."""
    if ctx.error_code == "insufficient_quota":
        return "over_budget"
    if ctx.error_code == "rate_limit_exceeded":
        return "rate_limited"
    hold = ctx.limits_hold
    if hold is None:
        return None
    return "reserved" if hold.is_checked else "unchecked"


class ResponseFacts(NamedTuple):
    response_id: str | None
    model: str | None
    finish_reasons: tuple[str, ...]


RESPONSE_ID_MAX = 200
# OpenAI's largest `n`: an upstream that ends more choices than that is not believed.
FINISH_REASONS_KEPT = 128


def choice_endings(payload: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(choice index, finish reason) of each choice `payload` ends, in its order; a
    choice without an integer `index` goes by its position."""
    endings: list[tuple[int, str]] = []
    for position, choice in enumerate(payload.get("choices") or ()):
        reason = choice.get("finish_reason") if isinstance(choice, Mapping) else None
        if isinstance(reason, str) and len(endings) < FINISH_REASONS_KEPT:
            index = choice.get("index")
            endings.append((index if isinstance(index, int) else position, reason[:64]))
    return endings


def response_facts(payload: Mapping[str, Any]) -> ResponseFacts:
    """The id and model the upstream gave its answer, and its finish reasons: of a whole
    response, or a stream's first and last events (telemetry/stream_facts.py). No text.
    One reason per generation, repeats kept (GenAI semconv: `n` 2 ending both with
    "stop" is ["stop", "stop"])."""
    response_id = payload.get("id")
    model = payload.get("model")
    reasons = [reason for _, reason in choice_endings(payload)]
    status = payload.get("status")  # Responses API: completed / incomplete / failed
    if not reasons and payload.get("object") == "response" and isinstance(status, str):
        reasons.append(status[:64])
    return ResponseFacts(
        response_id[:RESPONSE_ID_MAX] if isinstance(response_id, str) and response_id else None,
        model[:MODEL_TEXT_MAX] if isinstance(model, str) else None,
        tuple(reasons),
    )
