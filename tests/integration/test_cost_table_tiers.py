"""Models priced from litellm's table cost what the provider bills (pricing.py): at the
service tier the answer reports, audio tokens at their own rates, the whole request at
the long-context rates past a threshold; the header, the ledger, `gateway report usage`
and a USD budget all see it, and a request that asks for priority reserves at priority."""

from __future__ import annotations

import asyncio
import datetime
import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.limits.estimate import estimate_now
from gateway.limits.view import usage_view
from tests.integration.test_finance_reports import cli
from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  known: {{deployments: [{{provider: up, model: gpt-4o-2024-08-06}}]}}
  gpt-5: {{deployments: [{{provider: up, model: gpt-5}}]}}
  audio: {{deployments: [{{provider: up, model: gpt-4o-audio-preview-2024-12-17}}]}}
  long: {{deployments: [{{provider: up, model: gemini-2.5-pro}}]}}
  policy-priced:
    deployments: [{{provider: up, model: gpt-4o-audio-preview-2024-12-17}}]
    price: {{input_per_mtok: 2.5, output_per_mtok: 10}}
teams:
  demo: {{models: ["*"]}}
  capped:
    models: ["*"]
    budgets: [{{period: month, usd: 100}}]
"""
# What the fake upstream bills every request (as the probe's): prompt and completion
# tokens, of which audio on the audio model; a `long` prompt of 300,000 tokens.
PROMPT, COMPLETION = 1000, 500
AUDIO_IN, AUDIO_OUT = 800, 400
LONG_PROMPT = 300_000


def upstream(hold: asyncio.Event | None = None) -> web.Application:
    """An OpenAI-shaped upstream: answers at the tier asked for (`default` without one),
    whole or streamed (the tier in every chunk, as OpenAI sends it)."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if hold is not None:
            await hold.wait()
        tier = body.get("service_tier") or "default"
        if tier == "auto":
            tier = "default"
        prompt = LONG_PROMPT if body["model"] == "gemini-2.5-pro" else PROMPT
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": COMPLETION,
            "total_tokens": prompt + COMPLETION,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        if "audio" in body["model"]:
            usage["prompt_tokens_details"]["audio_tokens"] = AUDIO_IN
            usage["completion_tokens_details"]["audio_tokens"] = AUDIO_OUT
        head = {"id": "chatcmpl-1", "created": 0, "model": body["model"], "service_tier": tier}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "hello"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            answer = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            return web.json_response(answer)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        chunk = {**head, "object": "chat.completion.chunk"}
        delta = {"index": 0, "delta": {"content": "hello"}, "finish_reason": "stop"}
        for event in ({**chunk, "choices": [delta]}, {**chunk, "choices": [], "usage": usage}):
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def ledger_rows(tmp_path: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM usage_ledger")]
    return {row["request_id"]: row for row in rows}


async def ask(gw: Any, http: aiohttp.ClientSession, team: str = "demo", **body: Any) -> Any:
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    headers = {"authorization": f"Bearer {await gw.token(team)}"}
    async with http.post(f"{gw.base_url}/chat/completions", json=body, headers=headers) as r:
        await r.read()
        assert r.status == 200
        return r.headers


# (model, the request's extra fields, litellm's cost of the usage: generic_cost_per_token)
CASES = {
    # 1000 x 4.25e-6 + 500 x 1.7e-5: the table's priority rates for gpt-4o-2024-08-06
    "priority": ("known", {"service_tier": "priority"}, "0.012750000"),
    "default": ("known", {}, "0.007500000"),
    "auto": ("known", {"service_tier": "auto"}, "0.007500000"),
    # gpt-5 flex is half price: 1000 x 6.25e-7 + 500 x 5e-6
    "flex": ("gpt-5", {"service_tier": "flex"}, "0.003125000"),
    # 200 x 2.5e-6 + 800 x 4e-5 (audio in) + 100 x 1e-5 + 400 x 8e-5 (audio out)
    "audio": ("audio", {}, "0.065500000"),
    # past 200k prompt tokens the whole request: 300,000 x 2.5e-6 + 500 x 1.5e-5
    "long": ("long", {}, "0.757500000"),
    # a policy price has no audio or tier rates: 1000 x 2.5 + 500 x 10 per Mtok
    "policy": ("policy-priced", {"service_tier": "priority"}, "0.007500000"),
}


@pytest.mark.parametrize("case", CASES)
async def test_table_prices_follow_what_the_provider_bills(tmp_path, http, case):
    """The cost header, the ledger row (whole answer and stream) and the monthly report
    all carry the provider's price of the usage, as litellm's cost code computes it."""
    model, extra, usd = CASES[case]
    async with (
        serving(upstream()) as origin,
        running_gateway(tmp_path, POLICY.format(base=f"{origin}/v1")) as gw,
    ):
        whole = await ask(gw, http, model=model, **extra)
        streamed = await ask(gw, http, model=model, stream=True, **extra)
    assert whole["x-gateway-cost-usd"] == usd
    rows = ledger_rows(tmp_path)
    for headers in (whole, streamed):
        row = rows[headers["x-request-id"]]
        assert Decimal(row["cost_nanousd"]) / 10**9 == Decimal(usd)
        assert row["price_source"] == ("policy" if case == "policy" else "table")
    month = datetime.datetime.now(datetime.UTC).strftime("%Y-%m")
    report = cli(tmp_path, "--month", month, "--format", "json")
    assert report.returncode == 0, report.stderr
    assert Decimal(json.loads(report.stdout)["totals"]["cost_usd"]) == 2 * Decimal(usd)


async def test_a_priority_row_keeps_the_priority_unit_prices(tmp_path, http):
    """The ledger row's unit prices are those it was charged at: FOCUS lines add up."""
    async with (
        serving(upstream()) as origin,
        running_gateway(tmp_path, POLICY.format(base=f"{origin}/v1")) as gw,
    ):
        headers = await ask(gw, http, model="known", service_tier="priority")
    row = ledger_rows(tmp_path)[headers["x-request-id"]]
    assert (row["price_input"], row["price_output"]) == (4_250_000_000, 17_000_000_000)
    assert row["price_cached_input"] == 2_125_000_000


@pytest.mark.parametrize(
    ("extra", "input_nano", "output_nano"),
    [
        ({"service_tier": "priority"}, 4_250_000_000, 17_000_000_000),
        ({"service_tier": "default"}, 2_500_000_000, 10_000_000_000),
        ({}, 2_500_000_000, 10_000_000_000),
    ],
)
async def test_a_usd_budget_reserves_a_priority_request_at_priority_prices(
    tmp_path, http, extra, input_nano, output_nano
):
    """While the upstream works, a request that asks for priority holds its worst case
    at priority prices (a client's choice of tier cannot spend past the reservation);
    settled, the budget has used what the header says."""
    hold = asyncio.Event()
    async with (
        serving(upstream(hold)) as origin,
        running_gateway(tmp_path, POLICY.format(base=f"{origin}/v1")) as gw,
    ):
        asked = asyncio.create_task(
            ask(gw, http, "capped", model="known", max_tokens=1000, **extra)
        )
        policy = gw.services.policy.current()
        team = policy.teams["capped"]
        for _ in range(200):
            view = await usage_view(gw.services.limits, policy, team, None)
            if view["budgets"][0]["reserved"] != "0.000000000":
                break
            await asyncio.sleep(0.01)
        reserved = Decimal(view["budgets"][0]["reserved"])
        hold.set()
        headers = await asked
        view = await usage_view(gw.services.limits, policy, team, None)
    body = {"model": "known", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1000}
    prompt = estimate_now("chat", body, policy.models["known"], None).tokens - 1000
    assert prompt > 0
    assert reserved * 10**9 == (prompt * input_nano + 1000 * output_nano) / 10**6
    assert view["budgets"][0]["used"] == headers["x-gateway-cost-usd"]
    assert view["budgets"][0]["reserved"] == "0.000000000"
