"""A session under `guarded_trace` connects to no IP address the upstream rules refuse and
follows no redirect, whatever URL it is handed (aiohttp asks no resolver about an IP)."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from gateway.policy.upstreams import UpstreamRules, parse_upstream_allow
from gateway.providers.resolver import UpstreamRefused, guarded_trace
from tests.support.aiohttp_app import serving


def _recording(seen: list[str]) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(text="INTERNAL-ONLY DATA")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def _redirecting(target: str) -> web.Application:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(location=f"{target}/redirected{request.path}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    return app


async def test_an_ip_address_outside_the_allow_list_is_never_connected_to() -> None:
    seen: list[str] = []
    rules = UpstreamRules(parse_upstream_allow("127.0.0.2/32"), None)
    async with serving(_recording(seen)) as origin:  # 127.0.0.1
        async with aiohttp.ClientSession(trace_configs=[guarded_trace(rules)]) as session:
            with pytest.raises(UpstreamRefused, match=r"host 127\.0\.0\.1 is not in"):
                await session.get(f"{origin}/v1/messages")
    assert seen == []


async def test_a_redirect_is_refused_before_its_location_is_asked() -> None:
    """Even when the caller of the session asked aiohttp to follow redirects."""
    seen: list[str] = []
    rules = UpstreamRules(None, None)
    async with serving(_recording(seen)) as target, serving(_redirecting(target)) as origin:
        async with aiohttp.ClientSession(trace_configs=[guarded_trace(rules)]) as session:
            with pytest.raises(UpstreamRefused, match=r"a redirect \(HTTP 307\)") as refused:
                await session.post(f"{origin}/v1/messages", allow_redirects=True)
    assert seen == []
    assert "redirected" not in str(refused.value)


async def test_an_allowed_address_is_served() -> None:
    seen: list[str] = []
    rules = UpstreamRules(parse_upstream_allow("127.0.0.1/32"), None)
    async with serving(_recording(seen)) as origin:
        async with aiohttp.ClientSession(trace_configs=[guarded_trace(rules)]) as session:
            async with session.get(f"{origin}/v1/models") as response:
                assert await response.text() == "INTERNAL-ONLY DATA"
    assert seen == ["/v1/models"]
