"""Traces as an operator's collector sees them: one server span per request, one client
span per upstream attempt (failed ones with their error), the caller's trace continued
and ours carried upstream. Spans are read from the SDK's in-memory exporter."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx2 as httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tests.support.gateway import running_gateway
from tests.support.telemetry import traced_gateway
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  a: {{type: openai-compatible, api_base: "{a}"}}
  b: {{type: openai, api_base: "{b}"}}
models:
  m:
    deployments:
      - {{provider: a, model: model-a}}
      - {{provider: b, model: model-b, priority: 2}}
    routing: {{retries: 2, attempt_timeout_s: 5, timeout_s: 10, cooldown_s: 30,
               failure_threshold: 3}}
teams:
  demo: {{models: ["*"]}}
"""
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@pytest.fixture
async def pair():
    async with MockUpstream("a") as a, MockUpstream("b") as b:
        yield a, b


def of_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.kind is kind), key=lambda s: s.start_time or 0)


def hexed(value: int, digits: int) -> str:
    return f"{value:0{digits}x}"


async def test_failover_gives_one_server_span_and_a_client_span_per_attempt(tmp_path, pair):
    """A request that failed over shows both attempts under its server span, the failed one
    with its upstream status, the answering one with tokens, response model and finish."""
    a, b = pair
    a.behave("status", status=503)
    async with traced_gateway(tmp_path, POLICY.format(a=a.base_url, b=b.base_url)) as (gw, spans):
        client = await gw.openai()
        raw = await client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "hello there"}]
        )
        assert raw.headers["x-gateway-deployment"] == "b/model-b"
        finished = spans.get_finished_spans()
    (server,) = of_kind(finished, SpanKind.SERVER)
    first, second = of_kind(finished, SpanKind.CLIENT)
    assert len(finished) == 3
    assert server.name == "chat m"
    s = server.attributes
    assert s["gen_ai.operation.name"] == "chat"
    assert s["gen_ai.request.model"] == "m"
    assert s["gateway.team"] == "demo"
    assert s["gateway.subject"] == "tester"
    assert s["gateway.deployment"] == "b/model-b"
    assert s["gateway.attempts"] == 2
    assert s["http.response.status_code"] == 200
    assert s["gateway.request.id"] == raw.headers["x-request-id"]
    assert s["gen_ai.usage.input_tokens"] == 2  # the mock counts words
    assert "error.type" not in s
    assert server.status.status_code is StatusCode.UNSET

    assert first.name == "chat model-a"
    assert first.attributes["gen_ai.provider.name"] == "openai_compatible"
    assert first.attributes["gen_ai.request.model"] == "model-a"
    assert first.attributes["gateway.attempt.number"] == 1
    assert first.attributes["error.type"] == "503"
    assert first.status.status_code is StatusCode.ERROR

    assert second.attributes["gen_ai.provider.name"] == "openai"
    assert second.attributes["gateway.attempt.number"] == 2
    assert second.attributes["gen_ai.usage.input_tokens"] == 2
    assert second.attributes["gen_ai.usage.output_tokens"] == 4  # "mock reply from b"
    assert second.attributes["gen_ai.response.model"] == "model-b"
    assert second.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert "error.type" not in second.attributes
    for child in (first, second):
        assert child.parent is not None
        assert child.parent.span_id == server.context.span_id
        assert child.context.trace_id == server.context.trace_id
        assert server.start_time <= child.start_time <= child.end_time <= server.end_time


async def test_caller_traceparent_is_continued_and_ours_goes_upstream(tmp_path, pair):
    """A caller's `traceparent` makes our server span its child; the upstream receives a
    `traceparent` naming the attempt's client span in the same trace."""
    a, b = pair
    async with traced_gateway(tmp_path, POLICY.format(a=a.base_url, b=b.base_url)) as (gw, spans):
        client = await gw.openai()
        await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"traceparent": CALLER_TRACEPARENT, "tracestate": "vendor=1"},
        )
        finished = spans.get_finished_spans()
    (server,) = of_kind(finished, SpanKind.SERVER)
    (attempt,) = of_kind(finished, SpanKind.CLIENT)
    assert hexed(server.context.trace_id, 32) == CALLER_TRACE
    assert server.parent is not None and hexed(server.parent.span_id, 16) == CALLER_SPAN
    sent = a.requests[0].headers
    assert sent["traceparent"] == (f"00-{CALLER_TRACE}-{hexed(attempt.context.span_id, 16)}-01")
    assert sent["tracestate"] == "vendor=1"


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero parent
        "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # no flags
    ],
)
async def test_a_malformed_traceparent_starts_a_new_trace(tmp_path, pair, traceparent):
    """A `traceparent` that does not parse is ignored: the request is served, in a new trace."""
    a, b = pair
    async with traced_gateway(tmp_path, POLICY.format(a=a.base_url, b=b.base_url)) as (gw, spans):
        client = await gw.openai()
        await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"traceparent": traceparent},
        )
        (server,) = of_kind(spans.get_finished_spans(), SpanKind.SERVER)
    assert server.parent is None
    assert hexed(server.context.trace_id, 32) not in traceparent
    assert hexed(server.context.trace_id, 32) in a.requests[0].headers["traceparent"]


async def test_a_stream_attempt_span_lasts_until_the_stream_ends(tmp_path, pair):
    """The answering attempt of a stream ends with the stream, with its tokens and the
    time to the first chunk."""
    a, b = pair
    a.behave(Behaviour("ok", chunks=4, chunk_delay_s=0.05))
    async with traced_gateway(tmp_path, POLICY.format(a=a.base_url, b=b.base_url)) as (gw, spans):
        client = await gw.openai()
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        async for _ in stream:
            pass
        finished = spans.get_finished_spans()
    (server,) = of_kind(finished, SpanKind.SERVER)
    (attempt,) = of_kind(finished, SpanKind.CLIENT)
    assert attempt.attributes["gen_ai.request.stream"] is True
    assert attempt.attributes["gen_ai.usage.output_tokens"] == 4
    assert 0 < attempt.attributes["gen_ai.response.time_to_first_chunk"] < 5
    # 4 content chunks and the final ones, 50 ms apart: the span covers the whole stream.
    assert (attempt.end_time - attempt.start_time) / 1e9 >= 0.2
    assert server.end_time >= attempt.end_time


async def test_a_refused_request_has_its_server_span_and_no_attempt(tmp_path, pair):
    """A request without a token is traced as a 401 with its error code, and nothing upstream."""
    a, b = pair
    async with traced_gateway(tmp_path, POLICY.format(a=a.base_url, b=b.base_url)) as (gw, spans):
        async with httpx.AsyncClient(base_url=gw.origin) as http:
            reply = await http.post(
                "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            )
        assert reply.status_code == 401
        finished = spans.get_finished_spans()
    (server,) = finished
    assert server.kind is SpanKind.SERVER
    assert server.attributes["http.response.status_code"] == 401
    assert server.attributes["error.type"] == reply.json()["error"]["code"]
    assert "gateway.team" not in server.attributes
    assert server.status.status_code is StatusCode.UNSET  # a 4xx is the caller's, not ours


async def test_an_upstream_timeout_ends_the_attempt_span_as_timeout(tmp_path, pair):
    """An attempt the failover loop gave up on is a client span with error.type timeout."""
    a, b = pair
    a.behave("hang")
    policy = POLICY.replace("attempt_timeout_s: 5", "attempt_timeout_s: 0.3")
    async with traced_gateway(tmp_path, policy.format(a=a.base_url, b=b.base_url)) as (gw, spans):
        client = await gw.openai()
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
        first, second = of_kind(spans.get_finished_spans(), SpanKind.CLIENT)
    assert first.attributes["error.type"] == "timeout"
    assert "error.type" not in second.attributes


async def test_without_an_otlp_endpoint_nothing_is_traced(tmp_path, pair):
    """GATEWAY_OTLP_ENDPOINT unset: no tracer, no trace headers upstream, no trace id logged."""
    a, b = pair
    async with running_gateway(tmp_path, POLICY.format(a=a.base_url, b=b.base_url)) as gw:
        assert gw.services.telemetry.tracing is None
        client = await gw.openai()
        await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"traceparent": CALLER_TRACEPARENT},
        )
    assert "traceparent" not in a.requests[0].headers


def test_without_an_otlp_endpoint_the_sdk_is_never_imported(tmp_path):
    """The OpenTelemetry SDK costs nothing when tracing is off: it is not even imported."""
    code = (
        "import sys\n"
        "from gateway.app import app_from_env\n"
        "from gateway.policy.store import PolicyStore\n"
        "from gateway.settings import load_settings\n"
        "from gateway.telemetry import Telemetry\n"
        "app_from_env()\n"
        "t = Telemetry.from_settings(load_settings(), PolicyStore(None))\n"
        "assert t.tracing is None and t.metrics is not None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


LIMITED_POLICY = """
providers:
  a: {{type: openai-compatible, api_base: "{a}"}}
models:
  m:
    deployments:
      - {{provider: a, model: model-a}}
teams:
  demo:
    models: ["*"]
    limits: {{rpm: 1000, concurrency: 10}}
    budgets: [{{period: day, tokens: 1000000}}]
"""


async def test_the_server_span_says_what_the_limits_stage_decided(tmp_path, pair):
    """The record point settles the hold before the recorders run: the span still names
    the decision (it read nothing once settling had cleared the hold)."""
    a, _ = pair
    async with traced_gateway(tmp_path, LIMITED_POLICY.format(a=a.base_url)) as (gw, spans):
        client = await gw.openai()
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hello there"}]
        )
        finished = spans.get_finished_spans()
    (server,) = of_kind(finished, SpanKind.SERVER)
    assert server.attributes["gateway.budget.decision"] == "reserved"


async def test_a_failed_over_stream_says_its_parameters_id_model_and_own_first_chunk(
    tmp_path, pair
):
    """After a timeout, the answering attempt's span carries the request's sampling
    parameters, the upstream's id, model and finish reason, and a time to first chunk
    measured from its own start (the server span's counts from the request's arrival)."""
    a, b = pair
    a.behave("hang")
    policy = POLICY.replace("attempt_timeout_s: 5", "attempt_timeout_s: 0.3")
    async with traced_gateway(tmp_path, policy.format(a=a.base_url, b=b.base_url)) as (gw, spans):
        client = await gw.openai()
        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            temperature=0.25,
            top_p=0.5,
            max_tokens=40,
            stop=["zz"],
            seed=7,
            presence_penalty=0.5,
        )
        ids = {chunk.id async for chunk in stream}
        finished = spans.get_finished_spans()
    (server,) = of_kind(finished, SpanKind.SERVER)
    timed_out, answered = of_kind(finished, SpanKind.CLIENT)
    assert timed_out.attributes["error.type"] == "timeout"
    for attempt in (timed_out, answered):  # every attempt was asked the same
        p = attempt.attributes
        assert p["gen_ai.request.temperature"] == 0.25
        assert p["gen_ai.request.top_p"] == 0.5
        assert p["gen_ai.request.max_tokens"] == 40
        assert p["gen_ai.request.stop_sequences"] == ("zz",)
        assert p["gen_ai.request.seed"] == 7
        assert p["gen_ai.request.presence_penalty"] == 0.5
        assert "gen_ai.request.frequency_penalty" not in p  # not set: not said
        assert "gen_ai.request.choice.count" not in p  # n=1 (the default) is left out
    assert "gen_ai.request.temperature" not in server.attributes  # the client span's
    r = answered.attributes
    assert ids == {r["gen_ai.response.id"]}  # the id the client saw (chat: the upstream's)
    assert server.attributes["gen_ai.response.id"] == r["gen_ai.response.id"]
    assert r["gen_ai.response.model"] == "model-b"
    assert r["gen_ai.response.finish_reasons"] == ("stop",)
    span_s = (answered.end_time - answered.start_time) / 1e9
    assert 0 < r["gen_ai.response.time_to_first_chunk"] <= span_s  # not the 0.3 s before it
    assert server.attributes["gen_ai.response.time_to_first_chunk"] >= 0.3


async def test_each_generation_has_its_finish_reason(tmp_path):
    """n=2, both choices ending with "stop": the attempt's span says ["stop", "stop"], one
    reason per generation as the GenAI conventions want, whole answer and stream alike."""
    policy = """
providers:
  demo: {type: mock}
models:
  m:
    deployments: [{provider: demo, model: mock-1}]
teams:
  demo: {models: ["*"]}
"""
    async with traced_gateway(tmp_path, policy) as (gw, spans):
        client = await gw.openai()
        messages = [{"role": "user", "content": "hi"}]
        whole = await client.chat.completions.create(model="m", messages=messages, n=2)
        stream = await client.chat.completions.create(
            model="m", messages=messages, n=2, stream=True
        )
        async for _ in stream:
            pass
        finished = spans.get_finished_spans()
    assert [choice.finish_reason for choice in whole.choices] == ["stop", "stop"]
    attempts = of_kind(finished, SpanKind.CLIENT)
    assert [a.attributes["gen_ai.response.finish_reasons"] for a in attempts] == [
        ("stop", "stop"),
        ("stop", "stop"),
    ]
