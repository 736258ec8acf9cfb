"""GET /metrics after known traffic, parsed with prometheus-client's parser: requests,
tokens, latency, time to first token, attempts, failovers and cooldowns, with labels
bounded by the policy (one gateway process)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.support.gateway import running_gateway
from tests.support.metrics import samples, total
from tests.support.serving import serve_process
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  a: {{type: openai-compatible, api_base: "{a}"}}
  b: {{type: openai-compatible, api_base: "{b}"}}
models:
  m:
    deployments:
      - {{provider: a, model: model-a}}
      - {{provider: b, model: model-b, priority: 2}}
    routing: {{retries: 2, attempt_timeout_s: 5, timeout_s: 10, cooldown_s: 60,
               failure_threshold: 1}}
teams:
  demo: {{models: ["*"]}}
"""
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def pair():
    async with MockUpstream("a") as a, MockUpstream("b") as b:
        yield a, b


async def test_metrics_count_known_traffic(tmp_path, pair):
    """Three answers (the first after a failover that cooled `a`), one stream, one unknown
    model and one request without a token show up exactly in the scrape."""
    a, b = pair
    a.behave("status", status=503)
    async with running_gateway(tmp_path, POLICY.format(a=a.base_url, b=b.base_url)) as gw:
        client = await gw.openai()
        tokens_in = tokens_out = 0
        for _ in range(3):
            reply = await client.chat.completions.create(model="m", messages=HI)
            tokens_in += reply.usage.prompt_tokens
            tokens_out += reply.usage.completion_tokens
        stream = await client.chat.completions.create(
            model="m", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        async for chunk in stream:
            if chunk.usage is not None:
                tokens_in += chunk.usage.prompt_tokens
                tokens_out += chunk.usage.completion_tokens
        with pytest.raises(Exception, match="does not exist"):
            await client.chat.completions.create(model="no-such-model-123", messages=HI)
        async with httpx.AsyncClient(base_url=gw.origin) as http:
            refused = await http.post("/v1/chat/completions", json={"model": "m", "messages": HI})
            assert refused.status_code == 401
            scraped = await http.get("/metrics")  # no token needed
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        text = scraped.text

    ok = {"team": "demo", "model": "m", "deployment": "b/model-b", "endpoint": "chat"}
    assert total(text, "gateway_requests_total", status="200", **ok) == 4
    assert total(text, "gateway_requests_total", status="404", team="demo", model="_other") == 1
    assert total(text, "gateway_requests_total", status="401", team="_none", model="_none") == 1
    assert total(text, "gateway_requests_total") == 6
    assert total(text, "gateway_tokens_total", direction="input", team="demo") == tokens_in
    assert total(text, "gateway_tokens_total", direction="output", team="demo") == tokens_out
    assert total(text, "gateway_request_duration_seconds_count", model="m") == 4
    assert total(text, "gateway_request_duration_seconds_count") == 6
    assert total(text, "gateway_time_to_first_token_seconds_count", deployment="b/model-b") == 1
    assert total(text, "gateway_upstream_attempts_total", deployment="a/model-a") == 1
    assert (
        total(
            text, "gateway_upstream_attempts_total", deployment="a/model-a", result="server_error"
        )
        == 1
    )
    assert total(text, "gateway_upstream_attempts_total", deployment="b/model-b", result="ok") == 4
    assert total(text, "gateway_upstream_failovers_total", deployment="a/model-a") == 1
    assert total(text, "gateway_upstream_cooldowns_total", deployment="a/model-a") == 1
    assert total(text, "gateway_policy_version") == 1
    assert total(text, "gateway_refusals_total") == 0
    # No label is a request id, a subject or anything the caller typed outside the policy.
    values = {v for _, labels, _ in samples(text) for v in labels.values()}
    assert "tester" not in values
    assert "no-such-model-123" not in values
    assert not any(v.startswith("req") or len(v) >= 32 for v in values)


async def test_metrics_off_answers_404(tmp_path, pair):
    """GATEWAY_METRICS=off: /metrics is an unknown path in the OpenAI error shape."""
    a, b = pair
    policy = POLICY.format(a=a.base_url, b=b.base_url)
    async with running_gateway(tmp_path, policy, metrics_enabled=False) as gw:
        async with httpx.AsyncClient(base_url=gw.origin) as http:
            reply = await http.get("/metrics")
    assert reply.status_code == 404
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert reply.headers["x-request-id"]


def process_facts(pid: int) -> tuple[int, int]:
    """A process's resident bytes and open file descriptors, as Linux's /proc tells them."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if "VmRSS:" in line)
    return rss_kib * 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def test_metrics_expose_the_process_metrics_scrapers_expect(tmp_path):
    """`gateway serve` (one process): /metrics has prometheus-client's process and platform
    metrics for the serving process itself, next to the gateway's own."""
    started = time.time()
    with serve_process(tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.origin) as http:
            text = (await http.get("/metrics")).text
        rss_bytes, open_fds = process_facts(server.process.pid)  # the server's, not ours
    assert total(text, "process_cpu_seconds_total") > 0
    assert abs(total(text, "process_start_time_seconds") - started) < 60
    assert 0.5 < total(text, "process_resident_memory_bytes") / rss_bytes < 2
    assert total(text, "process_virtual_memory_bytes") > 0
    assert 0 < total(text, "process_open_fds") <= open_fds + 16
    assert total(text, "process_max_fds") > 0
    assert total(text, "python_info") == 1
    assert "gateway_policy_version" in text
