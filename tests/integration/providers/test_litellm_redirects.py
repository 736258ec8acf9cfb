"""A translated provider connects only where the upstream rules allow and follows nothing:
a redirect from its api_base is a failed attempt (never asked for at its Location, where
the key would go), and a refused address is not retried by litellm on a client of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gateway.policy.upstreams import UpstreamRules, parse_upstream_allow
from gateway.providers.base import UpstreamFailure
from gateway.providers.litellm_adapter import Kind, LitellmProvider
from tests.integration.providers.litellm_upstreams import (
    API_KEY,
    AWS,
    LITELLM_WARNINGS,
    MockUpstream,
    read_sse,
    run_upstream,
    upstream_call,
)
from tests.support.aiohttp_app import serving

pytestmark = LITELLM_WARNINGS

MODELS: dict[Kind, str] = {
    "anthropic": "claude-3-5-sonnet-20241022",
    "gemini": "gemini-2.5-flash",
    "bedrock": "anthropic.claude-3-haiku-20240307-v1:0",
}
MESSAGES = [{"role": "user", "content": "hi"}]
ONLY_127_0_0_2 = UpstreamRules(parse_upstream_allow("127.0.0.2/32"), None)


def _provider(kind: Kind, api_base: str, rules: UpstreamRules | None = None) -> LitellmProvider:
    upstreams = {} if rules is None else {"upstreams": rules}
    if kind == "bedrock":
        return LitellmProvider("bedrock-test", kind, api_base, None, AWS, **upstreams)
    return LitellmProvider(f"{kind}-test", kind, api_base, API_KEY, {}, **upstreams)


def _redirecting(target: str, status: int) -> web.Application:
    """Every request answered with a redirect to the same path at `target`."""

    async def redirect(request: web.Request) -> web.Response:
        location = f"{target}{request.path_qs}"
        return web.Response(status=status, headers={"location": location})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    return app


@pytest.fixture(params=sorted(MODELS))
async def kind(request: pytest.FixtureRequest) -> Kind:
    return request.param  # type: ignore[no-any-return]  # one of MODELS' keys


@pytest.fixture
async def target(kind: Kind) -> AsyncIterator[MockUpstream]:
    """A working upstream of `kind`: what a followed redirect would reach."""
    async with run_upstream(kind) as upstream:
        yield upstream


async def _attempt(provider: LitellmProvider, kind: Kind, *, is_stream: bool) -> None:
    call = upstream_call("chat", MODELS[kind], {"messages": MESSAGES}, is_stream=is_stream)
    try:
        if is_stream:
            await read_sse(await provider.open_stream(call))
        else:
            await provider.send(call)
    finally:
        await provider.close()


@pytest.mark.parametrize("is_stream", [False, True], ids=["send", "stream"])
@pytest.mark.parametrize("status", [307, 301, 308])
async def test_a_redirect_is_a_failed_attempt_never_followed(
    kind: Kind, target: MockUpstream, status: int, is_stream: bool
) -> None:
    """The upstream working at the Location gets no request (and no key); the attempt fails
    over with the status and no word of where the redirect pointed."""
    async with serving(_redirecting(f"{target.base_url}/redirected-HERE", status)) as origin:
        with pytest.raises(UpstreamFailure) as failed:
            await _attempt(_provider(kind, origin), kind, is_stream=is_stream)
    assert target.seen == []
    assert failed.value.status == status
    assert "redirected-HERE" not in failed.value.detail


async def test_an_ip_address_outside_the_allow_list_is_not_connected_to(
    kind: Kind, target: MockUpstream
) -> None:
    """aiohttp asks no resolver about 127.0.0.1 written as such: the rules still apply."""
    with pytest.raises(UpstreamFailure) as failed:
        await _attempt(_provider(kind, target.base_url, ONLY_127_0_0_2), kind, is_stream=False)
    assert target.seen == []
    assert "not connected: host 127.0.0.1 is not in GATEWAY_UPSTREAM_ALLOW" in failed.value.detail


async def test_a_refused_name_is_not_retried_outside_the_rules(
    kind: Kind, target: MockUpstream
) -> None:
    """litellm retries a refused connection on a client it builds itself; that one obeys
    the rules too, so `localhost` (127.0.0.1, outside the allow-list) is never reached."""
    api_base = target.base_url.replace("127.0.0.1", "localhost")
    with pytest.raises(UpstreamFailure) as failed:
        await _attempt(_provider(kind, api_base, ONLY_127_0_0_2), kind, is_stream=True)
    assert target.seen == []
    assert "not connected: localhost resolves to 127.0.0.1" in failed.value.detail


EMBEDDING_MODELS: dict[Kind, str] = {
    "gemini": "text-embedding-004",
    "bedrock": "amazon.titan-embed-text-v2:0",
}


async def _embed(provider: LitellmProvider, kind: Kind) -> None:
    try:
        await provider.send(upstream_call("embeddings", EMBEDDING_MODELS[kind], {"input": "hi"}))
    finally:
        await provider.close()


@pytest.mark.parametrize("kind", sorted(EMBEDDING_MODELS))
async def test_an_embeddings_call_follows_no_redirect_either(
    kind: Kind, target: MockUpstream
) -> None:
    """Gemini's embeddings, where litellm takes a client of its own, included."""
    async with serving(_redirecting(target.base_url, 307)) as origin:
        with pytest.raises(UpstreamFailure) as failed:
            await _embed(_provider(kind, origin), kind)
    assert target.seen == []
    assert failed.value.status == 307


@pytest.mark.parametrize("kind", sorted(EMBEDDING_MODELS))
async def test_an_embeddings_call_obeys_the_allow_list(kind: Kind, target: MockUpstream) -> None:
    with pytest.raises(UpstreamFailure) as failed:
        await _embed(_provider(kind, target.base_url, ONLY_127_0_0_2), kind)
    assert target.seen == []
    assert "not connected: host 127.0.0.1 is not in GATEWAY_UPSTREAM_ALLOW" in failed.value.detail
