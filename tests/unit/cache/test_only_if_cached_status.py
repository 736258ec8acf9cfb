"""What the 504 of `Cache-Control: only-if-cached` says in `x-gateway-cache` (and so in
its ledger row): `miss` after a lookup, `bypass` for a request the cache never serves
(gateway/cache/flow.py)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.cache import flow
from gateway.cache.errors import NotCached
from gateway.cache.memory import MemoryCache
from gateway.cache.rules import CacheStatus
from gateway.context import RequestContext
from gateway.providers.base import Endpoint
from tests.unit.cache.test_cache_flow import BODY as CHAT
from tests.unit.cache.test_cache_flow import ROUTE, TEAM, Down


async def refused_status(
    endpoint: Endpoint,
    body: dict[str, Any],
    cache_control: tuple[str, ...] = ("only-if-cached",),
    backend: Any = None,
    is_stream: bool = False,
) -> CacheStatus | None:
    """The cache status a refused only-if-cached request records."""
    ctx = RequestContext(request_id="r", endpoint=endpoint)
    ctx.is_stream = is_stream
    with pytest.raises(NotCached):
        await flow.consult(
            ctx,
            MemoryCache() if backend is None else backend,
            team=TEAM,
            route=ROUTE,
            body=body,
            cache_control=cache_control,
            subject="tester",
            timezone="UTC",
        )
    return ctx.cache


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("responses", {"model": "chat", "input": "hi"}),
        ("chat", {**CHAT, "n": 2}),
    ],
    ids=["responses", "n=2"],
)
async def test_a_request_the_cache_never_serves_is_refused_as_a_bypass(
    endpoint: Endpoint, body: dict[str, Any]
) -> None:
    """README: the Responses API and n > 1 bypass the cache; nothing was looked up."""
    assert await refused_status(endpoint, body) is CacheStatus.BYPASS


@pytest.mark.parametrize(
    "cache_control",
    [("only-if-cached, no-store",), ("only-if-cached", "no-cache"), ("only-if-cached, max-age=0",)],
)
async def test_a_request_that_opts_out_of_stored_answers_is_refused_as_a_bypass(
    cache_control: tuple[str, ...],
) -> None:
    """As the same request without only-if-cached says: nothing was looked up."""
    assert await refused_status("chat", CHAT, cache_control) is CacheStatus.BYPASS


async def test_a_backend_that_is_down_is_refused_as_a_bypass() -> None:
    assert await refused_status("chat", CHAT, backend=Down()) is CacheStatus.BYPASS


async def test_nothing_stored_is_refused_as_a_miss() -> None:
    """Looked up, nothing found: the README's `miss`."""
    assert await refused_status("chat", CHAT) is CacheStatus.MISS
