"""A response-cache hit spends no tokens, but README's rule holds for it too: every answer
to a limited team's token carries OpenAI's x-ratelimit-* headers, the token keys as they
stand (a hit takes none). Before, a hit carried only the request keys, and a team with
`tpm` and no `rpm` got none at all."""

from __future__ import annotations

import sqlite3
from typing import Any

import openai
import pytest

from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

UPSTREAM = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat:
    deployments: [{{provider: up, model: upstream-chat}}]
"""
POLICY = (
    UPSTREAM
    + """teams:
  both:
    models: ["*"]
    cache: {{ttl_s: 600, max_bytes: 1000000}}
    limits: {{rpm: 1000, tpm: 1000000}}
  tokens-only:
    models: ["*"]
    cache: {{ttl_s: 600, max_bytes: 1000000}}
    limits: {{tpm: 1000000}}
"""
)
HELLO = [{"role": "user", "content": "hello there, cache"}]
TOKENS = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")
REQUESTS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)


@pytest.fixture
async def up():
    async with MockUpstream("up") as upstream:
        yield upstream


async def headers_of(client: openai.AsyncOpenAI, *, stream: bool) -> Any:
    raw = await client.chat.completions.with_raw_response.create(
        model="chat", messages=HELLO, max_tokens=20, stream=stream
    )
    if stream:
        [chunk async for chunk in raw.parse()]
    else:
        raw.parse()
    return raw.headers


@pytest.mark.parametrize(
    ("team", "expected"), [("both", TOKENS + REQUESTS), ("tokens-only", TOKENS)]
)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_hit_carries_the_token_keys_as_they_stand(tmp_path, up, team, expected, stream):
    async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
        client = await gw.openai(team)
        miss = await headers_of(client, stream=stream)
        hit = await headers_of(client, stream=stream)
        assert (miss["x-gateway-cache"], hit["x-gateway-cache"]) == ("miss", "hit")
        assert len(up.requests) == 1
        for name in expected:
            assert name in miss and name in hit, name
        assert [n for n in (*TOKENS, *REQUESTS) if n in hit] == [
            n for n in (*TOKENS, *REQUESTS) if n in miss
        ]
        assert hit["x-ratelimit-limit-tokens"] == "1000000"
        # nothing taken by the hit: what stands after the miss settled (its true usage),
        # at least what the miss's reservation (its estimate) had left
        remaining_hit = int(hit["x-ratelimit-remaining-tokens"])
        assert int(miss["x-ratelimit-remaining-tokens"]) <= remaining_hit <= 1000000


REFUSING_POLICY = (
    UPSTREAM
    + """teams:
  one-a-minute:
    models: ["*"]
    cache: {{ttl_s: 600, max_bytes: 1000000}}
    limits: {{rpm: 1}}
"""
)


async def refused_headers(client: openai.AsyncOpenAI, content: str, **headers: str) -> Any:
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": content}],
            max_tokens=20,
            extra_headers=headers,
        )
    return refused.value.response.headers


async def test_a_refusal_after_the_lookup_says_how_the_cache_saw_it(tmp_path, up):
    """SPEC §2: an answer of a team with a cache carries x-gateway-cache. A request a
    limit refuses after the lookup says `miss` (or `bypass` for a client that opted out),
    as its ledger row does; a stored answer refused by rpm says nothing: it was neither
    served from the cache nor a miss."""
    async with running_gateway(tmp_path, REFUSING_POLICY.format(base=up.base_url)) as gw:
        client = (await gw.openai("one-a-minute")).with_options(max_retries=0)
        first = await headers_of(client, stream=False)
        assert first["x-gateway-cache"] == "miss"
        assert (await refused_headers(client, "another question"))["x-gateway-cache"] == "miss"
        opted_out = await refused_headers(client, "a third", **{"Cache-Control": "no-cache"})
        assert opted_out["x-gateway-cache"] == "bypass"
        stored = await refused_headers(client, HELLO[0]["content"])
        assert "x-gateway-cache" not in stored
        assert "retry-after" in stored
        assert len(up.requests) == 1
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        rows = db.execute("SELECT status, cache FROM usage_ledger ORDER BY at_ms, rowid")
        assert list(rows) == [(200, "miss"), (429, "miss"), (429, "bypass"), (429, None)]
