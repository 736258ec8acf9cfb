"""`on_backend_error: open` serves while Redis is down, and counts what it served unchecked
where an operator alerts: `gateway_limits_unchecked_total{team}` on /metrics (not only in
a log line, which names each request). A request the backend checked adds nothing to it."""

from __future__ import annotations

import shutil

import pytest

from tests.support.gateway import running_gateway
from tests.support.metrics import total
from tests.support.redis_server import free_port, start_redis
from tests.support.upstream import MockUpstream

UNCHECKED = "gateway_limits_unchecked_total"


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_requests_served_unchecked_are_counted_on_metrics(tmp_path, http, caplog) -> None:
    port = free_port()
    server = start_redis(port, str(tmp_path))
    try:
        async with MockUpstream("up") as up:
            bundle = (
                "limits: {on_backend_error: open}\n"
                f'providers: {{up: {{type: openai-compatible, api_base: "{up.base_url}"}}}}\n'
                "models: {chat: {deployments: [{provider: up, model: m}]}}\n"
                'teams: {lim: {models: ["chat"], budgets: [{period: day, tokens: 100000}]}}\n'
            )
            async with running_gateway(
                tmp_path, bundle, redis_url=f"redis://127.0.0.1:{port}"
            ) as gw:
                client = await gw.openai("lim")
                hi = [{"role": "user", "content": "hi"}]
                await client.chat.completions.create(model="chat", messages=hi, max_tokens=5)
                async with http.get(gw.origin + "/metrics") as response:
                    assert total(await response.text(), UNCHECKED) == 0  # checked
                server.terminate()
                server.wait(10)
                served = set()
                for _ in range(2):
                    raw = await client.chat.completions.with_raw_response.create(
                        model="chat", messages=hi, max_tokens=5
                    )
                    served.add(raw.headers["x-request-id"])
                async with http.get(gw.origin + "/metrics") as response:
                    scrape = await response.text()
                assert total(scrape, UNCHECKED, team="lim") == 2
                assert total(scrape, UNCHECKED) == 2
                logged = {
                    record.fields["request_id"]
                    for record in caplog.records
                    if record.name == "gateway.limits" and "served unchecked" in record.message
                }
                assert logged == served
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(10)
