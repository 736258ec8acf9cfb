"""Cache-Control request directives against a real gateway, through the official openai
SDK (and aiohttp for several header lines): max-age, min-fresh, max-stale (ignored),
only-if-cached (504 not_cached on a miss, no upstream call, nothing reserved), Pragma:
no-cache without Cache-Control, and malformed values read as absent."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import openai
import pytest
from multidict import CIMultiDict

from gateway.limits.plan import Estimate, build_plan
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat:
    deployments: [{{provider: up, model: upstream-chat}}]
    price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}
routing: {{timeout_s: 10, attempt_timeout_s: 5, retries: 0}}
teams:
  cached:
    models: ["*"]
    cache: {{ttl_s: 600, max_bytes: 1000000}}
    budgets: [{{period: day, tokens: 100000}}]
  brief:
    models: ["*"]
    cache: {{ttl_s: 1, max_bytes: 1000000}}
  plain: {{models: ["*"]}}
"""
HELLO = [{"role": "user", "content": "hello there, directives"}]
CACHE = "x-gateway-cache"


@pytest.fixture
async def up():
    async with MockUpstream("up") as upstream:
        yield upstream


@pytest.fixture
async def gw(tmp_path, up):
    async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gateway:
        yield gateway


async def ask(client: openai.AsyncOpenAI, cache_control: str | None = None, **kwargs: Any):
    """A whole answer with this Cache-Control: (x-gateway-cache, the completion's id)."""
    kwargs.setdefault("model", "chat")
    kwargs.setdefault("messages", HELLO)
    if cache_control is not None:
        kwargs["extra_headers"] = {
            "Cache-Control": cache_control,
            **kwargs.get("extra_headers", {}),
        }
    raw = await client.chat.completions.with_raw_response.create(**kwargs)
    return raw.headers.get(CACHE), raw.parse().id


async def ask_stream(client: openai.AsyncOpenAI, cache_control: str) -> tuple[str | None, str]:
    raw = await client.chat.completions.with_raw_response.create(
        model="chat", messages=HELLO, stream=True, extra_headers={"Cache-Control": cache_control}
    )
    chunks = [chunk async for chunk in raw.parse()]
    return raw.headers.get(CACHE), chunks[0].id


def ledger_rows(tmp_path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM usage_ledger ORDER BY at_ms, rowid")]


async def budget_used(gw: RunningGateway) -> tuple[int, int]:
    """(used, reserved) tokens of team cached's day budget, once nothing is in flight."""
    limits = gw.services.limits
    rules = gw.services.policy.current().teams["cached"]
    plan = build_plan(rules, "tester", Estimate(0, 0), limits.clock())
    for _ in range(200):  # a hold is settled just after the answer went out
        counter = (await limits.snapshot(plan)).budgets[0]
        if counter is None:  # never touched: nothing reserved, nothing used
            return 0, 0
        if counter.reserved == 0:
            return counter.used, counter.reserved
        await asyncio.sleep(0.01)
    raise AssertionError("a reservation was never settled")


async def test_max_age_serves_only_an_entry_young_enough(gw, up):
    """max-age=600 takes the entry just stored; a second later max-age=1 does not: the
    upstream answers, and that answer is the one stored for the next request."""
    client = await gw.openai("cached")
    status, first = await ask(client)
    assert status == "miss"
    assert await ask(client, "max-age=600") == ("hit", first)
    await asyncio.sleep(1.1)
    status, fresh = await ask(client, "max-age=1")
    assert status == "miss" and fresh != first
    assert await ask(client) == ("hit", fresh)
    assert await ask(client, "max-age=2") == ("hit", fresh)
    assert len(up.requests) == 2


async def test_max_age_zero_fetches_fresh_and_stores_it(gw, up):
    """max-age=0, like no-cache: the upstream answers every time (streamed too; the answer
    says bypass: not served from the cache) and the newest answer is what later requests
    get."""
    client = await gw.openai("cached")
    _, first = await ask(client)
    status, fresh = await ask(client, "max-age=0")
    assert status == "bypass" and fresh != first
    assert await ask(client) == ("hit", fresh)
    status, streamed = await ask_stream(client, "max-age=0")
    assert status == "bypass" and streamed != fresh
    assert await ask(client) == ("hit", streamed)
    assert len(up.requests) == 3


async def test_min_fresh_serves_only_an_entry_fresh_long_enough(gw, up):
    """The ttl is 600 s: min-fresh=590 takes a new entry; min-fresh=601 never can, so the
    upstream answers and its answer is stored."""
    client = await gw.openai("cached")
    _, first = await ask(client)
    assert await ask(client, "min-fresh=590") == ("hit", first)
    status, fresh = await ask(client, "min-fresh=601")
    assert status == "miss" and fresh != first
    assert await ask(client) == ("hit", fresh)
    assert len(up.requests) == 2


async def test_max_stale_is_ignored_nothing_expired_is_served(gw, up):
    """Team brief's ttl is 1 s: after it, max-stale=3600 still gets a fresh answer."""
    client = await gw.openai("brief")
    _, first = await ask(client)
    await asyncio.sleep(1.1)
    status, fresh = await ask(client, "max-stale=3600")
    assert status == "miss" and fresh != first
    assert await ask(client, "max-stale") == ("hit", fresh)
    assert len(up.requests) == 2


async def test_only_if_cached_miss_is_a_504_refusal_without_upstream(tmp_path, up):
    """Nothing stored: 504 in OpenAI's error shape, code not_cached; the upstream is not
    called, nothing reserved or charged, the SDK does not retry (x-should-retry: false),
    and the ledger has one refusal row. Once stored, only-if-cached is a plain hit."""
    async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
        client = await gw.openai("cached", max_retries=2)
        with pytest.raises(openai.APIStatusError) as refused:
            await ask(client, "only-if-cached")
        response = refused.value.response
        error = response.json()["error"]
        assert response.status_code == 504
        assert response.json() == {
            "error": {
                "message": error["message"],
                "type": "invalid_request_error",
                "param": None,
                "code": "not_cached",
            }
        }
        assert "only-if-cached" in error["message"]
        assert response.headers["x-should-retry"] == "false"
        assert response.headers[CACHE] == "miss"  # looked up, as its ledger row says
        assert up.requests == []
        assert await budget_used(gw) == (0, 0)

        status, first = await ask(client)
        assert status == "miss"
        spent = await budget_used(gw)
        assert spent[0] > 0
        assert await ask(client, "only-if-cached") == ("hit", first)
        assert await ask_stream(client, "only-if-cached") == ("hit", first)
        assert len(up.requests) == 1
        assert await budget_used(gw) == spent
    rows = ledger_rows(tmp_path)
    assert [(r["status"], r["outcome"], r["error_code"], r["cache"]) for r in rows] == [
        (504, "refused", "not_cached", "miss"),
        (200, "ok", None, "miss"),
        (200, "ok", None, "hit"),
        (200, "ok", None, "hit"),
    ]
    refusal = rows[0]
    assert (refusal["input_tokens"], refusal["output_tokens"], refusal["cost_nanousd"]) == (0, 0, 0)
    assert (refusal["attempts"], refusal["deployment"]) == (0, None)


async def test_only_if_cached_stream_miss_is_a_504(gw, up):
    client = await gw.openai("cached")
    with pytest.raises(openai.APIStatusError) as refused:
        await ask_stream(client, "only-if-cached")
    assert refused.value.status_code == 504
    assert refused.value.code == "not_cached"
    assert up.requests == []


@pytest.mark.parametrize(
    ("team", "cache_control"),
    [
        ("plain", "only-if-cached"),  # no cache for the team: nothing is ever stored
        ("cached", "only-if-cached, no-store"),
        ("cached", "only-if-cached, no-cache"),
        ("cached", "only-if-cached, max-age=0"),
    ],
)
async def test_only_if_cached_with_nothing_it_may_have_is_a_504(gw, up, team, cache_control):
    """Even with an entry stored, a request that may not be served it is refused."""
    client = await gw.openai(team)
    await ask(client)
    with pytest.raises(openai.APIStatusError) as refused:
        await ask(client, cache_control)
    assert (refused.value.status_code, refused.value.code) == (504, "not_cached")
    assert len(up.requests) == 1


async def test_pragma_no_cache_counts_only_without_cache_control(gw, up):
    """Pragma: no-cache alone refreshes (an HTTP/1.0 client); beside any Cache-Control
    header it is ignored."""
    client = await gw.openai("cached")
    _, first = await ask(client)
    status, fresh = await ask(client, extra_headers={"Pragma": "no-cache"})
    assert status == "bypass" and fresh != first
    assert await ask(client, "max-age=600", extra_headers={"Pragma": "no-cache"}) == (
        "hit",
        fresh,
    )
    assert await ask(client, "foo", extra_headers={"Pragma": "no-cache"}) == ("hit", fresh)
    assert len(up.requests) == 2


@pytest.mark.parametrize(
    ("cache_control", "hits"),
    [
        ("max-age=abc", True),  # malformed: as if absent
        ("max-age=-1", True),
        ("max-age=1.5, min-fresh=x", True),
        ("MAX-AGE=0", False),  # names are case-insensitive
        ("Min-Fresh=601", False),
        ("Only-If-Cached, max-age=600", True),
    ],
)
async def test_values_as_http_caches_read_them(gw, up, cache_control, hits):
    client = await gw.openai("cached")
    _, first = await ask(client)
    status, answer = await ask(client, cache_control)
    assert (status == "hit", answer == first) == (hits, hits)


async def test_several_header_lines_are_one_list(gw, up, http):
    """Cache-Control: max-age=600 and a second line no-cache: no-cache holds."""
    client = await gw.openai("cached")
    _, first = await ask(client)
    headers = CIMultiDict(
        [
            ("authorization", f"Bearer {await gw.token('cached')}"),
            ("cache-control", "max-age=600"),
            ("cache-control", "no-cache"),
        ]
    )
    body = {"model": "chat", "messages": HELLO}
    async with http.post(f"{gw.base_url}/chat/completions", json=body, headers=headers) as r:
        assert (r.status, r.headers[CACHE]) == (200, "bypass")
        assert (await r.json())["id"] != first
    headers["cache-control"] = "only-if-cached"
    headers.add("cache-control", "max-age=600")
    async with http.post(f"{gw.base_url}/chat/completions", json=body, headers=headers) as r:
        assert (r.status, r.headers[CACHE]) == (200, "hit")
    assert len(up.requests) == 2
