"""/metrics exports each counter and histogram once: no `*_created` series beside it
(prometheus_client's default doubles every series with its creation time)."""

from __future__ import annotations

import httpx2 as httpx

from tests.support.gateway import running_gateway
from tests.support.metrics import samples
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  a: {{type: openai-compatible, api_base: "{a}"}}
models:
  m:
    deployments: [{{provider: a, model: model-a}}]
teams:
  demo: {{models: ["*"]}}
"""
HI = [{"role": "user", "content": "hi"}]


async def test_a_scrape_has_no_created_series(tmp_path):
    """After an answer, the scrape has the request counters and no `_created` sample."""
    async with MockUpstream("a") as a:
        async with running_gateway(tmp_path, POLICY.format(a=a.base_url)) as gw:
            client = await gw.openai()
            await client.chat.completions.create(model="m", messages=HI)
            async with httpx.AsyncClient(base_url=gw.origin) as http:
                text = (await http.get("/metrics")).text
    names = {found[0] for found in samples(text)}
    assert "gateway_requests_total" in names
    assert [name for name in names if name.endswith("_created")] == []
    assert "_created" not in text
