"""The response cache on the real Redis, in the request path: shared entries, and a Redis
that goes away (the cache is skipped, the request served, the failure counted).

The gateway reaches Redis through a TCP proxy the test cuts: GATEWAY_REDIS_URL serves the
limits too, so the policy says `limits: {on_backend_error: open}`, and the team `limited`
(rpm) shows a request still served while both the cache and the limits lose their store.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import openai
import pytest
from redis.asyncio import Redis

from gateway.cache.redis_backend import index_keys
from gateway.policy.store import load_policy_dir
from tests.support.gateway import RunningGateway, running_gateway
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


async def test_request_directives_on_redis(tmp_path, redis_url):
    """On Redis as in memory: only-if-cached is refused (504) before the entry exists and
    served after; min-fresh beyond what the entry has left and max-age=0 fetch fresh and
    store it; max-age=600 takes it."""
    team = f"t{secrets.token_hex(5)}"
    async with (
        MockUpstream("up") as up,
        running_gateway(
            tmp_path, POLICY.format(base=up.base_url, team=team), redis_url=redis_url
        ) as gw,
    ):
        client = await gw.openai(team)

        async def asking(cache_control: str) -> tuple[str, str]:
            raw = await client.chat.completions.with_raw_response.create(
                model="chat",
                messages=[{"role": "user", "content": "directives"}],
                extra_headers={"Cache-Control": cache_control},
            )
            return raw.headers["x-gateway-cache"], raw.parse().id

        with pytest.raises(openai.APIStatusError) as refused:
            await asking("only-if-cached")
        assert (refused.value.status_code, refused.value.code) == (504, "not_cached")
        assert up.requests == []
        status, first = await asking("max-age=600")
        assert status == "miss"
        assert await asking("only-if-cached") == ("hit", first)
        status, fresh = await asking("min-fresh=61")  # the ttl is 60 s
        assert status == "miss" and fresh != first
        status, newest = await asking("max-age=0")
        assert status == "bypass" and newest != fresh
        assert await asking("max-age=600, min-fresh=30") == ("hit", newest)
        assert len(up.requests) == 3


POOLS_POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat: {{deployments: [{{provider: up, model: upstream-chat}}]}}
  m2: {{deployments: [{{provider: up, model: upstream-chat}}]{m2_cache}}}
routing: {{timeout_s: 10, attempt_timeout_s: 5, retries: 0}}
teams:
  {team}:
    models: ["*"]
    cache: {{ttl_s: 60, max_bytes: {team_bytes}}}
"""


def swap_policy(gw: RunningGateway, folder: Path, policy_yaml: str) -> None:
    """Put `policy_yaml` in force at once (as a policy edit does), as the version in force:
    with no version number the policy poll (1 s) would put the stored version back."""
    folder.mkdir(exist_ok=True)
    (folder / "bundle.yaml").write_text(policy_yaml)
    store = gw.services.policy
    store.swap(load_policy_dir(folder, os.environ), store.version)


async def index_bytes(redis_url: str, team: str, pool: str = "") -> tuple[int, int]:
    """(the pool index's #total, the bytes its entries really hold in Redis)."""
    client = Redis.from_url(redis_url)
    try:
        zset, sizes = index_keys(team, pool)
        total = int(await client.hget(sizes, "#total") or 0)
        held = sum([await client.strlen(member) for member in await client.zrange(zset, 0, -1)])
    finally:
        await client.aclose()
    return total, held


async def test_a_model_given_its_own_cache_keeps_each_entry_in_one_pool(tmp_path, redis_url):
    """Model m2 gains a `cache:` of its own: the team pool's entry is not served from the
    m2 pool (a miss, stored there), a `no-cache` refresh stores into m2's pool only, and
    the team pool evicting its entries leaves m2's index true (no phantom bytes), and the
    reverse once m2's policy goes. Clearing the team takes every entry."""
    team = f"t{secrets.token_hex(5)}"
    m2_cache = ", cache: {ttl_s: 60, max_bytes: 100000}"
    async with MockUpstream("up") as up:
        policy = POOLS_POLICY.format(base=up.base_url, team=team, m2_cache="", team_bytes=100000)
        async with running_gateway(tmp_path, policy, redis_url=redis_url) as gw:
            client = await gw.openai(team)

            async def asking(model: str, content: str, cache_control: str = "") -> str:
                headers = {"Cache-Control": cache_control} if cache_control else {}
                raw = await client.chat.completions.with_raw_response.create(
                    model=model,
                    messages=[{"role": "user", "content": content}],
                    extra_headers=headers,
                )
                return raw.headers["x-gateway-cache"]

            try:
                assert await asking("m2", "question a") == "miss"  # the team's pool
                assert await asking("m2", "question a") == "hit"
                one_entry = (await index_bytes(redis_url, team))[0]
                # m2 gets a policy of its own; the team's pool holds one entry from now on
                swap_policy(
                    gw,
                    tmp_path / "own",
                    POOLS_POLICY.format(
                        base=up.base_url, team=team, m2_cache=m2_cache, team_bytes=one_entry + 50
                    ),
                )
                assert await asking("m2", "question a") == "miss"  # not the team pool's entry
                assert await asking("m2", "question a", "no-cache") == "bypass"
                assert await asking("m2", "question a") == "hit"
                assert await asking("chat", "question b") == "miss"  # evicts the team's a
                assert await index_bytes(redis_url, team) == (one_entry, one_entry)
                m2_total, m2_held = await index_bytes(redis_url, team, "m2")
                assert m2_total == m2_held > 0
                assert await asking("m2", "question a") == "hit"

                # m2's own policy goes: its entries are m2's pool's, not served to the team's
                swap_policy(
                    gw,
                    tmp_path / "back",
                    POOLS_POLICY.format(
                        base=up.base_url, team=team, m2_cache="", team_bytes=100000
                    ),
                )
                assert await asking("m2", "question a") == "miss"
                assert await asking("m2", "question a") == "hit"
                team_total, team_held = await index_bytes(redis_url, team)
                assert team_total == team_held
                assert await gw.services.cache.clear(team=team) == 3
                assert await index_bytes(redis_url, team) == (0, 0)
                assert await index_bytes(redis_url, team, "m2") == (0, 0)
            finally:
                await gw.services.cache.clear(team=team)
