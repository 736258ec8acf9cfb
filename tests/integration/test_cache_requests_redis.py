"""The response cache on the real Redis, in the request path: shared entries, and a Redis
that goes away (the cache is skipped, the request served, the failure counted).

The gateway reaches Redis through a TCP proxy the test cuts: GATEWAY_REDIS_URL serves the
limits too, so the policy says `limits: {on_backend_error: open}`, and the team `limited`
(rpm) shows a request still served while both the cache and the limits lose their store.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import openai
import pytest

from tests.support.gateway import running_gateway
from tests.support.metrics import total
from tests.support.tcp_proxy import TcpProxy
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat: {{deployments: [{{provider: up, model: upstream-chat}}]}}
routing: {{timeout_s: 10, attempt_timeout_s: 5, retries: 0}}
limits: {{on_backend_error: open}}
teams:
  {team}:
    models: ["*"]
    cache: {{ttl_s: 60, max_bytes: 100000}}
  {team}-limited:
    models: ["*"]
    cache: {{ttl_s: 60, max_bytes: 100000}}
    limits: {{rpm: 1000}}
"""


async def ask(client: openai.AsyncOpenAI, content: str = "hello redis") -> tuple[str, str]:
    """(x-gateway-cache, the answer's id)."""
    raw = await client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": content}]
    )
    return raw.headers["x-gateway-cache"], raw.parse().id


@pytest.mark.parametrize("limited", [False, True], ids=["cache-only", "with-rpm"])
async def test_redis_down_skips_the_cache_and_serves(tmp_path, redis_url, http, limited):
    """Redis up: miss then hit. Cut: the same request is served by the upstream with
    x-gateway-cache bypass, and counted. Restored: the entry is found again."""
    target = urlsplit(redis_url)
    team = f"t{secrets.token_hex(5)}"  # the Redis is shared: entries of our own
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}{target.path}"
        async with (
            MockUpstream("up") as up,
            running_gateway(
                tmp_path, POLICY.format(base=up.base_url, team=team), redis_url=url
            ) as gw,
        ):
            client = await gw.openai(f"{team}-limited" if limited else team)
            status, first = await ask(client)
            assert status == "miss"
            assert await ask(client) == ("hit", first)
            assert len(up.requests) == 1

            proxy.cut()
            status, fresh = await ask(client)
            assert status == "bypass" and fresh != first
            assert len(up.requests) == 2
            assert gw.services.cache.unavailable == 1
            async with http.get(f"{gw.origin}/metrics") as r:
                text = await r.text()
            assert total(text, "gateway_cache_unavailable_total") == 1
            assert total(text, "gateway_cache_requests_total", result="bypass") == 1

            proxy.restore()
            assert await ask(client) == ("hit", first)
            assert len(up.requests) == 2
