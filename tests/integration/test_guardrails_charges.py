"""An answer the output guardrail refuses was generated all the same: the refusal says
what it cost (and how the cache saw it), and the ledger charges every token of it."""

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.limits.token_count import count_text
from tests.support.gateway import running_gateway
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}", api_key: "${{UPSTREAM_KEY}}"}}
models:
  gpt-4o-mini:
    deployments: [{{provider: up, model: gpt-4o-mini}}]
    price: {{input_per_mtok: 1000, output_per_mtok: 2000}}
teams:
  demo: {{models: ["*"], guardrails: [out], cache: {{ttl_s: 60, max_bytes: 1048576}}}}
guardrails:
  out:
    output:
      - {{detector: secrets, action: block}}
"""
LEAKED_KEY = "AKIA" + "Z7Q2W9X4C6V8B1N3"  # an AWS access key id, made up here


def ledger_rows(tmp_path: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM usage_ledger")]
    return {row["request_id"]: row for row in rows}


async def chat(gw, *, stream: bool, **extra: Any) -> tuple[int, bytes, Any]:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "the key?"}],
        "stream": stream,
        **extra,
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{gw.base_url}/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {await gw.token()}"},
        ) as response:
            return response.status, await response.read(), response.headers


async def test_a_blocked_whole_answer_says_its_cost_and_cache_status(tmp_path, monkeypatch):
    """400 content_policy_violation with x-gateway-cost-usd (what the ledger charges, not
    zero) and x-gateway-cache, as the answer would have carried."""
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    async with MockUpstream("up") as up:
        up.behave(Behaviour("ok", content=f"Here it is: {LEAKED_KEY}", completion_tokens=7))
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            status, raw, headers = await chat(gw, stream=False)
    assert status == 400 and orjson.loads(raw)["error"]["code"] == "content_policy_violation"
    assert headers["x-gateway-cache"] == "miss"
    cost = Decimal(headers["x-gateway-cost-usd"])
    row = ledger_rows(tmp_path)[headers["x-request-id"]]
    assert row["output_tokens"] == 7
    assert cost > 0 and Decimal(row["cost_nanousd"]) / 10**9 == cost


@pytest.mark.parametrize("chunks", [1, 4])
async def test_a_stream_cut_by_a_block_is_charged_for_what_was_generated(
    tmp_path, monkeypatch, chunks
):
    """The blocking chunk and the text held back before it were generated: the ledger
    counts them (a one-chunk answer was recorded with 0 output tokens)."""
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    content = f"Sure, the production key is {LEAKED_KEY} for the deploy."
    async with MockUpstream("up") as up:
        up.behave(Behaviour("stream_no_usage", content=content, chunks=chunks))
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            status, raw, headers = await chat(gw, stream=True)
            request_id = headers["x-request-id"]
    assert status == 200 and b"content_policy_violation" in raw and LEAKED_KEY.encode() not in raw
    row = ledger_rows(tmp_path)[request_id]
    assert row["error_code"] == "content_policy_violation"
    generated = count_text(content, "gpt-4o-mini")
    # The stream was cut at the chunk that completed the key: all of it up to there counts.
    through_key = content[: content.index(LEAKED_KEY) + len(LEAKED_KEY)]
    assert row["output_tokens"] >= count_text(through_key, "gpt-4o-mini")
    assert row["output_tokens"] <= generated
    assert row["cost_nanousd"] > 0


async def test_a_redacted_streams_usage_chunk_says_what_the_ledger_charges(tmp_path, monkeypatch):
    """An upstream that reports no usage, an output rule that redacts: the gateway counts
    what the upstream generated (the key, not the marker) for the ledger, and the usage
    chunk the client asked for says the same (it said the count of the redacted text)."""
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    policy = POLICY.format(base="{base}").replace("action: block", "action: redact")
    content = f"code {LEAKED_KEY} end, and {LEAKED_KEY} again"
    async with MockUpstream("up") as up:
        up.behave(Behaviour("stream_no_usage", content=content, chunks=3))
        async with running_gateway(tmp_path, policy.replace("{base}", up.base_url)) as gw:
            options = {"include_usage": True}
            _, raw, headers = await chat(gw, stream=True, stream_options=options)
            request_id = headers["x-request-id"]
    assert LEAKED_KEY.encode() not in raw and b"[REDACTED:secrets]" in raw
    events = [orjson.loads(e[6:]) for e in raw.split(b"\n\n") if e.startswith(b"data: {")]
    usage = events[-1]["usage"]
    row = ledger_rows(tmp_path)[request_id]
    assert row["output_tokens"] == count_text(content, "gpt-4o-mini")
    assert usage["completion_tokens"] == row["output_tokens"]
    assert usage["prompt_tokens"] == row["input_tokens"]
