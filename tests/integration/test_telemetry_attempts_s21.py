"""What the metrics and the trace say of an upstream attempt agree: a relayed upstream 4xx
is `refused` with its status on the span, a stream that broke is not `ok`, and a cache hit
(no attempt at all) is no deployment's time to first token."""

from __future__ import annotations

import asyncio

import openai
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from tests.support.metrics import total
from tests.support.telemetry import traced_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  good:
    deployments: [{{provider: up, model: good}}]
routing: {{timeout_s: 10, attempt_timeout_s: 5, retries: 0}}
teams:
  cached:
    models: ["*"]
    cache: {{ttl_s: 600, max_bytes: 1000000}}
"""
HELLO = [{"role": "user", "content": "hello there"}]
ATTEMPTS = "gateway_upstream_attempts_total"


@pytest.fixture
async def up():
    async with MockUpstream("up") as upstream:
        yield upstream


async def scrape(http, gw, attempts: int = 0) -> str:
    """/metrics, once it counts `attempts` attempts (a client that hung up at an error
    event is done before the gateway has finished its request)."""
    for _ in range(100):
        async with http.get(f"{gw.origin}/metrics") as reply:
            text = await reply.text()
        if total(text, ATTEMPTS) >= attempts:
            return text
        await asyncio.sleep(0.02)
    raise AssertionError(f"/metrics never counted {attempts} attempts")


def client_spans(spans):
    return [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]


async def stream_text(client: openai.AsyncOpenAI) -> str:
    stream = await client.chat.completions.create(model="good", messages=HELLO, stream=True)
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


async def test_cache_hits_are_no_deployments_time_to_first_token(tmp_path, up, http):
    async with traced_gateway(tmp_path, POLICY.format(base=up.base_url)) as (gw, _):
        client = await gw.openai("cached")
        answer = await stream_text(client)  # a miss: the upstream answers, and is timed
        before = await scrape(http, gw)
        for _ in range(3):  # hits, replayed from the cache
            assert await stream_text(client) == answer
        after = await scrape(http, gw)
    ttft = "gateway_time_to_first_token_seconds_count"
    labels = {"deployment": "up/good", "model": "good"}
    assert total(before, ttft, **labels) == 1
    assert total(after, ttft, **labels) == 1
    assert total(after, "gateway_cache_requests_total", result="hit") == 3
    assert total(after, ATTEMPTS) == total(before, ATTEMPTS) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_a_relayed_upstream_4xx_is_refused_in_metrics_and_trace(tmp_path, up, http, stream):
    up.behave("status", status=400)
    async with traced_gateway(tmp_path, POLICY.format(base=up.base_url)) as (gw, spans):
        client = await gw.openai("cached")
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="good", messages=HELLO, stream=stream)
        text = await scrape(http, gw)
    assert total(text, ATTEMPTS, deployment="up/good", result="refused") == 1
    assert total(text, ATTEMPTS, result="ok") == 0
    (span,) = client_spans(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "400"
    assert span.attributes["gateway.upstream.status_code"] == 400


async def test_a_stream_the_upstream_breaks_is_not_an_ok_attempt(tmp_path, up, http):
    up.behave("stream_drop", fault_after=2)
    async with traced_gateway(tmp_path, POLICY.format(base=up.base_url)) as (gw, spans):
        client = await gw.openai("cached")
        with pytest.raises(openai.APIError):
            await stream_text(client)
        text = await scrape(http, gw, attempts=1)
    assert total(text, ATTEMPTS, deployment="up/good") == 1
    assert total(text, ATTEMPTS, result="ok") == 0
    assert total(text, ATTEMPTS, deployment="up/good", result="error") == 1
    (span,) = client_spans(spans)
    assert span.status.status_code is StatusCode.ERROR


async def test_an_answer_a_gateway_rule_refuses_is_still_an_ok_attempt(tmp_path, up, http):
    """An output rule's refusal (400, the answer charged) is the gateway's, not the
    upstream's: the attempt that answered is ok and its span has no upstream status."""
    policy = (
        POLICY.format(base=up.base_url).replace(
            '    models: ["*"]\n', '    models: ["*"]\n    guardrails: [strict]\n'
        )
        + "guardrails:\n  strict:\n    output: [{pattern: 'mock', name: no_mock, action: block}]\n"
    )
    async with traced_gateway(tmp_path, policy) as (gw, spans):
        client = await gw.openai("cached")
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="good", messages=HELLO)
        text = await scrape(http, gw)
    assert total(text, ATTEMPTS, deployment="up/good", result="ok") == 1
    (span,) = client_spans(spans)
    assert "gateway.upstream.status_code" not in span.attributes


@pytest.mark.parametrize("stream", [False, True])
async def test_a_cache_hits_span_has_the_answer_its_client_saw(tmp_path, up, stream):
    """A hit's server span carries the id, model and finish reasons of the stored answer
    it sends, as a miss's does of the upstream's (README: the id its client saw)."""
    async with traced_gateway(tmp_path, POLICY.format(base=up.base_url)) as (gw, spans):
        client = await gw.openai("cached")
        miss = await client.chat.completions.create(model="good", messages=HELLO)
        if stream:
            chunks = await client.chat.completions.create(model="good", messages=HELLO, stream=True)
            seen = {(c.id, c.model) async for c in chunks}
        else:
            hit = await client.chat.completions.create(model="good", messages=HELLO)
            seen = {(hit.id, hit.model)}
    assert seen == {(miss.id, miss.model)}
    served = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert [s.attributes.get("gateway.cache") for s in served] == ["miss", "hit"]
    for span in served:
        assert span.attributes["gen_ai.response.id"] == miss.id
        assert span.attributes["gen_ai.response.model"] == miss.model
        assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
