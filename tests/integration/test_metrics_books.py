"""The money and the guardrails in GET /metrics: the cost counter adds up to the costs the
callers were told, guardrail actions are counted by rule, and the ledger's backlog is shown."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.gateway import running_gateway
from tests.support.metrics import samples, total
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  m:
    deployments: [{{provider: up, model: model-a}}]
    price: {{input_per_mtok: 0.15, output_per_mtok: 0.60}}
teams:
  demo: {{models: ["*"], guardrails: [mail]}}
guardrails:
  mail:
    input:
      - {{detector: email, action: redact}}
"""


async def test_cost_guardrail_actions_and_ledger_backlog_are_scraped(tmp_path, http):
    async with (
        MockUpstream("up") as up,
        running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw,
    ):
        client = await gw.openai()
        told = Decimal(0)
        for text in ("hello", "write to ann@example.com", "and bob@example.org please"):
            raw = await client.chat.completions.with_raw_response.create(
                model="m", messages=[{"role": "user", "content": text}]
            )
            told += Decimal(raw.headers["x-gateway-cost-usd"])
        scraped = await http.get(f"{gw.origin}/metrics")
        text = await scraped.text()

    assert told > 0
    assert total(text, "gateway_cost_usd_total", team="demo", model="m") == pytest.approx(
        float(told), rel=1e-9
    )
    assert total(text, "gateway_guardrail_actions_total", rule="email", action="redact") == 2
    names = {name for name, _, _ in samples(text)}
    assert {"gateway_ledger_queue_rows", "gateway_ledger_spool_bytes"} <= names
    assert total(text, "gateway_ledger_spool_bytes") == 0  # the database was up throughout
