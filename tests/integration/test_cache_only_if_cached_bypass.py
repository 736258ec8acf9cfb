"""`Cache-Control: only-if-cached` on a request the cache never serves (the Responses API,
chat with n > 1): the 504 `not_cached` says `bypass`, in its header and its ledger row,
as the same request without the directive does; nothing was looked up. Real gateway,
mock upstream, the official openai SDK."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat: {{deployments: [{{provider: up, model: upstream-chat}}]}}
routing: {{timeout_s: 10, attempt_timeout_s: 5, retries: 0}}
teams:
  cached:
    models: ["*"]
    cache: {{ttl_s: 600, max_bytes: 1000000}}
"""
ONLY_IF_CACHED = {"Cache-Control": "only-if-cached"}
CACHE = "x-gateway-cache"


def ledger_rows(tmp_path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        query = "SELECT endpoint, status, error_code, cache FROM usage_ledger ORDER BY at_ms, rowid"
        return list(db.execute(query))


async def test_only_if_cached_on_a_request_the_cache_never_serves_says_bypass(
    tmp_path: Path,
) -> None:
    """504 not_cached, no upstream call, `bypass` in the header and the ledger row."""
    async with MockUpstream("up") as up:
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            client = await gw.openai("cached", max_retries=0)
            with pytest.raises(openai.APIStatusError) as responses:
                await client.responses.create(
                    model="chat", input="hi", extra_headers=ONLY_IF_CACHED
                )
            with pytest.raises(openai.APIStatusError) as several:
                await client.chat.completions.create(
                    model="chat",
                    messages=[{"role": "user", "content": "hi"}],
                    n=2,
                    extra_headers=ONLY_IF_CACHED,
                )
        assert up.requests == []
    for refused in (responses.value, several.value):
        assert (refused.status_code, refused.code) == (504, "not_cached")
        assert refused.response.headers[CACHE] == "bypass"
    assert ledger_rows(tmp_path) == [
        ("responses", 504, "not_cached", "bypass"),
        ("chat", 504, "not_cached", "bypass"),
    ]
