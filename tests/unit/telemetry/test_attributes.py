"""Span attributes and names from plain values: the request context, one attempt."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.trace import SpanContext, TraceFlags, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.auth.principal import Principal
from gateway.context import Outcome, RequestContext
from gateway.guardrails.decision import GuardrailHit
from gateway.guardrails.kinds import GuardAction, Where
from gateway.policy.compiled import Deployment
from gateway.providers.base import UpstreamFailure
from gateway.telemetry import attributes as attrs
from gateway.telemetry import names
from gateway.telemetry.names import AttemptResult
from gateway.usage.pricing import PriceSource, UnitPrices
from gateway.usage.usage import Usage

DEPLOYMENT = Deployment("azure-east", "gpt-4o", 1.0, 1)
PRINCIPAL = Principal("search", "svc-7", "client-1", frozenset(), "https://idp", 0.0)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example/v1/traces", "https://otel.example/v1/traces"),
        ("https://otel.example/prefix", "https://otel.example/prefix/v1/traces"),
        (" http://127.0.0.1:9 ", "http://127.0.0.1:9/v1/traces"),
    ],
)
def test_traces_url_appends_the_signal_path_once(endpoint, expected):
    assert attrs.traces_url(endpoint) == expected


@pytest.mark.parametrize("endpoint", ["", "collector:4318", "grpc://c:4317", "http://", "ftp://x"])
def test_traces_url_refuses_what_is_not_an_http_url(endpoint):
    with pytest.raises(ValueError, match="not an http"):
        attrs.traces_url(endpoint)


@given(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.sampled_from([0, 1]))
def test_format_traceparent_round_trips_through_the_w3c_propagator(trace_id, span_id, flags):
    """What we send upstream is what an OpenTelemetry receiver reads back."""
    header = attrs.format_traceparent(trace_id, span_id, flags)
    context = TraceContextTextMapPropagator().extract({"traceparent": header})
    parsed: SpanContext = get_current_span(context).get_span_context()
    assert (parsed.trace_id, parsed.span_id, parsed.trace_flags) == (
        trace_id,
        span_id,
        TraceFlags(flags),
    )


@pytest.mark.parametrize(
    ("failure", "is_answer", "result", "error_type"),
    [
        (None, True, AttemptResult.OK, None),
        (None, False, AttemptResult.CANCELLED, None),
        (UpstreamFailure("x", status=429), False, AttemptResult.RATE_LIMITED, "429"),
        (UpstreamFailure("x", status=500), False, AttemptResult.SERVER_ERROR, "500"),
        (UpstreamFailure("x", status=503), False, AttemptResult.SERVER_ERROR, "503"),
        (UpstreamFailure("x", status=401), False, AttemptResult.HTTP_ERROR, "401"),
        (UpstreamFailure("x", is_timeout=True), False, AttemptResult.TIMEOUT, "timeout"),
        (
            UpstreamFailure("x", status=408, is_timeout=True),
            False,
            AttemptResult.TIMEOUT,
            "timeout",
        ),
        (UpstreamFailure("x"), False, AttemptResult.CONNECT_ERROR, "error"),
    ],
)
def test_attempt_results_and_error_types(failure, is_answer, result, error_type):
    assert attrs.attempt_result(failure, is_answer) is result
    if failure is not None:
        assert attrs.failure_error_type(failure) == error_type


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("openai", "openai"),
        ("azure", "azure.ai.openai"),
        ("anthropic", "anthropic"),
        ("gemini", "gcp.gemini"),
        ("bedrock", "aws.bedrock"),
        ("openai-compatible", "openai_compatible"),
        ("something-new", "something-new"),
        (None, "other"),
    ],
)
def test_provider_names_follow_the_genai_well_known_values(kind, name):
    assert attrs.provider_name(kind) == name


@pytest.mark.parametrize(
    ("endpoint", "operation"),
    [("chat", "chat"), ("completions", "text_completion"), ("embeddings", "embeddings"),
     ("responses", "chat")],
)  # fmt: skip
def test_operation_names(endpoint, operation):
    assert attrs.operation_name(endpoint) == operation


def test_attempt_attributes_name_the_real_upstream():
    assert attrs.attempt_attributes("chat", "azure", DEPLOYMENT, 2, True) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "azure.ai.openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.request.stream": True,
        "gateway.deployment": "azure-east/gpt-4o",
        "gateway.attempt.number": 2,
    }


def test_attempt_attributes_carry_the_upstream_server_when_it_has_one():
    server = attrs.ServerAddress("x.openai.azure.com", 443)
    found = attrs.attempt_attributes("chat", "azure", DEPLOYMENT, 1, False, server)
    assert found["server.address"] == "x.openai.azure.com"
    assert found["server.port"] == 443
    assert "server.address" not in attrs.attempt_attributes("chat", "mock", DEPLOYMENT, 1, False)


@pytest.mark.parametrize(
    ("kind", "api_base", "expected"),
    [
        ("openai", None, ("api.openai.com", 443)),  # the provider's own default
        ("openai", "https://api.openai.com/v1", ("api.openai.com", 443)),
        ("azure", "https://NAME.openai.azure.com", ("name.openai.azure.com", 443)),
        ("openai-compatible", "http://vllm:8000/v1", ("vllm", 8000)),
        ("openai-compatible", "http://vllm/v1", ("vllm", 80)),
        ("openai-compatible", "https://host.example:8443/a/b?x=1", ("host.example", 8443)),
        ("openai-compatible", "http://user:secret@host.example:81/v1", ("host.example", 81)),
        ("openai-compatible", "http://[::1]:8000/v1", ("::1", 8000)),  # no brackets
        ("openai-compatible", "https://[2001:db8::5]/v1", ("2001:db8::5", 443)),
        ("anthropic", "https://proxy.internal/anthropic", ("proxy.internal", 443)),
        ("mock", None, None),
        ("mock", "http://ignored:1", None),
        ("anthropic", None, None),  # litellm's own default: not ours to guess
        ("openai-compatible", "http://h:99999/v1", None),  # unreadable port: left out
        ("openai-compatible", "ftp://h/v1", None),
    ],
)
def test_server_address_of_a_provider(kind, api_base, expected):
    found = attrs.server_address(kind, api_base)
    assert found == (None if expected is None else attrs.ServerAddress(*expected))


def finished(**fields: object) -> RequestContext:
    ctx = RequestContext(request_id="req_1", endpoint="chat")
    for name, value in fields.items():
        setattr(ctx, name, value)
    return ctx


def test_request_attributes_of_an_answered_request():
    ctx = finished(
        principal=PRINCIPAL,
        model="fast",
        deployment=DEPLOYMENT,
        attempts=2,
        usage=Usage(12, 30, cached_tokens=4),
        response_model="gpt-4o-2024-08-06",
        finish_reasons=("stop",),
        is_stream=True,
        first_byte_s=0.25,
    )
    assert attrs.request_attributes(ctx, 7) == {
        "gen_ai.operation.name": "chat",
        "gateway.request.id": "req_1",
        "http.response.status_code": 200,
        "gateway.outcome": "ok",
        "gateway.attempts": 2,
        "gen_ai.request.stream": True,
        "gateway.team": "search",
        "gateway.subject": "svc-7",
        "gateway.client_id": "client-1",
        "gen_ai.request.model": "fast",
        "gateway.deployment": "azure-east/gpt-4o",
        "gateway.policy.version": 7,
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.usage.cache_read.input_tokens": 4,
        "gateway.usage.estimated": False,
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.response.time_to_first_chunk": 0.25,
    }


def test_request_attributes_of_a_refusal_carry_its_error_and_nothing_unknown():
    ctx = finished(model="x" * 1000)
    ctx.end(404, Outcome.REFUSED, "model_not_found")
    found = attrs.request_attributes(ctx, None)
    assert found["error.type"] == "model_not_found"
    assert found["gateway.error.code"] == "model_not_found"
    assert len(found["gen_ai.request.model"]) == 200  # the caller's text, bounded
    for absent in ("gateway.team", "gateway.deployment", "gen_ai.usage.input_tokens",
                   "gateway.policy.version"):  # fmt: skip
        assert absent not in found


def test_an_outcome_without_an_error_code_is_its_error_type():
    ctx = finished()
    ctx.end(499, Outcome.CLIENT_DISCONNECTED)
    assert attrs.answer_attributes(ctx)["error.type"] == "client_disconnected"


@pytest.mark.parametrize(
    ("payload", "facts"),
    [
        (
            {
                "id": "chatcmpl-1",
                "model": "m-1",
                "choices": [{"finish_reason": "stop"}],
            },
            ("chatcmpl-1", "m-1", ("stop",)),
        ),
        (
            {
                "model": "m",
                "choices": [
                    {"finish_reason": "length"},
                    {"finish_reason": "stop"},
                    {"finish_reason": "length"},
                ],
            },
            (None, "m", ("length", "stop", "length")),  # one per generation, repeats kept
        ),
        (
            {
                "choices": [
                    {"index": 0, "finish_reason": "stop"},
                    {"index": 1, "finish_reason": "stop"},
                ]
            },
            (None, None, ("stop", "stop")),  # n=2
        ),
        ({"id": 7, "choices": [{"finish_reason": None}, "junk", 3]}, (None, None, ())),
        ({"id": "", "model": 5, "choices": "nope"}, (None, None, ())),
        (
            {"id": "resp_1", "object": "response", "model": "r", "status": "completed"},
            ("resp_1", "r", ("completed",)),
        ),
        ({"object": "list", "model": "emb", "data": []}, (None, "emb", ())),
        ({}, (None, None, ())),
    ],
)
def test_response_facts_read_model_and_finish_reasons_only(payload, facts):
    assert attrs.response_facts(payload) == facts


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero parent
        "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff is invalid
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # no flags
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # 00 has no more
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  # uppercase
        "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",  # short trace id
    ],
)
def test_parse_traceparent_refuses_what_w3c_refuses(value):
    assert attrs.parse_traceparent(value) is None


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
         (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, 1)),
        (" 01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-future ",
         (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, 0)),
    ],
)  # fmt: skip
def test_parse_traceparent_reads_valid_ones(value, parsed):
    assert attrs.parse_traceparent(value) == parsed


@given(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.integers(0, 255))
def test_parse_reads_what_format_writes(trace_id, span_id, flags):
    header = attrs.format_traceparent(trace_id, span_id, flags)
    assert attrs.parse_traceparent(header) == (trace_id, span_id, flags)
    head = attrs.traceparent_head(trace_id)  # a trace's head, made once, gives the same
    assert attrs.format_traceparent(trace_id, span_id, flags, head) == header


def test_sampling_new_traces_by_ratio():
    low, high = 5, 0xFFFFFFFFFFFFFFF0
    assert attrs.is_sampled_new(high, attrs.sampling_bound(1.0)) and attrs.is_sampled_new(
        low, attrs.sampling_bound(1.0)
    )
    assert not attrs.is_sampled_new(low, attrs.sampling_bound(0.0))
    assert attrs.is_sampled_new(low, attrs.sampling_bound(0.5)) and not attrs.is_sampled_new(
        high, attrs.sampling_bound(0.5)
    )
    ids = range(1, 2**64, 2**64 // 1000)
    assert 230 <= sum(attrs.is_sampled_new(i, attrs.sampling_bound(0.25)) for i in ids) <= 270


def _finished(**fields: object) -> RequestContext:
    ctx = RequestContext(request_id="r-1", endpoint="chat")
    ctx.principal, ctx.deployment = PRINCIPAL, DEPLOYMENT
    for name, value in fields.items():
        setattr(ctx, name, value)
    return ctx


def test_cost_guardrails_and_budget_decision_reach_the_span():
    """The exact cost as USD, the rules that fired (names, never text), the budget decision."""
    ctx = _finished(
        usage=Usage(10, 5),
        prices=UnitPrices(1, 1, 1, 1, 1, PriceSource.POLICY),
        cost_nanousd=1_234_567,
        guardrail_hits=[GuardrailHit("email", GuardAction.REDACT, Where.INPUT)],
    )
    span = attrs.request_attributes(ctx, 3)
    assert span[names.GATEWAY_COST_USD] == pytest.approx(0.001234567)
    assert span[names.GATEWAY_GUARDRAIL_ACTIONS] == ("email:redact:input",)
    assert names.GATEWAY_BUDGET_DECISION not in span  # the team has no limits


@pytest.mark.parametrize(
    ("error_code", "expected"),
    [("insufficient_quota", "over_budget"), ("rate_limit_exceeded", "rate_limited")],
)
def test_a_limits_refusal_names_its_decision(error_code, expected):
    ctx = _finished(status=429, outcome=Outcome.REFUSED, error_code=error_code)
    assert attrs.request_attributes(ctx, None)[names.GATEWAY_BUDGET_DECISION] == expected
    assert names.GATEWAY_COST_USD not in attrs.request_attributes(ctx, None)  # nothing priced


def test_the_server_span_is_named_after_a_known_model_only():
    """A model name the caller made up (a 404) stays out of the span name: each would be
    a new name, and one could be as long as the body (the probe sent 8 MB ones)."""
    assert attrs.server_span_name("chat", "gpt-4o", None) == "chat gpt-4o"
    assert attrs.server_span_name("chat", "gpt-4o", "rate_limit_exceeded") == "chat gpt-4o"
    assert attrs.server_span_name("chat", "x" * 8_000_000, "model_not_found") == "chat"
    assert attrs.server_span_name("embeddings", None, None) == "embeddings"
    long_known = attrs.server_span_name("chat", "m" * 1000, None)
    assert long_known == "chat " + "m" * attrs.MODEL_TEXT_MAX


def test_request_parameters_are_what_the_request_set():
    """REFERENCE.md §3.2: the sampling parameters the body set, nothing it did not."""
    body = {
        "messages": [{"role": "user", "content": "secret prompt"}],
        "temperature": 0,
        "top_p": 0.9,
        "max_completion_tokens": 100,
        "frequency_penalty": -0.5,
        "presence_penalty": 1,
        "stop": "END",
        "seed": 42,
        "n": 3,
        "top_k": 5,
    }
    assert attrs.request_parameters(body) == {
        "gen_ai.request.temperature": 0.0,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.max_tokens": 100,
        "gen_ai.request.frequency_penalty": -0.5,
        "gen_ai.request.presence_penalty": 1.0,
        "gen_ai.request.stop_sequences": ("END",),
        "gen_ai.request.seed": 42,
        "gen_ai.request.choice.count": 3,
        "gen_ai.request.top_k": 5,
    }
    assert attrs.request_parameters({"messages": [], "n": 1}) == {}  # n=1: left out
    assert attrs.request_parameters(None) == {}
    assert attrs.request_parameters({"max_output_tokens": 9}) == {"gen_ai.request.max_tokens": 9}


def test_request_parameters_of_the_wrong_type_or_too_long_are_left_out_or_cut():
    body = {"temperature": "hot", "seed": True, "max_tokens": 1.5, "stop": ["a" * 500, 3] * 4}
    assert attrs.request_parameters(body) == {
        "gen_ai.request.stop_sequences": ("a" * attrs.STOP_SEQUENCE_TEXT_MAX,) * 2
    }


def test_the_attempt_time_to_first_chunk_starts_with_the_attempt():
    """1.2 s after arrival, on an attempt that began 1.0 s after it: 0.2 s."""
    ctx = RequestContext(request_id="r", endpoint="chat", first_byte_s=1.2)
    ctx.started = 50.0
    assert attrs.first_chunk_s(ctx, 51.0) == pytest.approx(0.2)
    assert attrs.first_chunk_s(ctx, None) == 1.2  # from arrival (the server span)


def test_a_responses_server_span_names_no_upstream_id():
    """Its client saw the gateway's own id; the upstream's is on the attempt's span."""
    ctx = RequestContext(request_id="r", endpoint="responses")
    ctx.response_id = "resp_up"
    assert attrs.response_id_attribute(ctx, is_client_span=True) == {
        "gen_ai.response.id": "resp_up"
    }
    assert attrs.response_id_attribute(ctx, is_client_span=False) == {}
    ctx.endpoint = "chat"
    assert attrs.response_id_attribute(ctx, is_client_span=False) == {
        "gen_ai.response.id": "resp_up"
    }
