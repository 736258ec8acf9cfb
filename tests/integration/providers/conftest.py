"""Fixtures: one loopback mock upstream per provider kind, and a LitellmProvider on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.providers.litellm_adapter import Kind, LitellmProvider
from tests.integration.providers.litellm_upstreams import API_KEY, AWS, Deployment, run_upstream


async def _deployment(kind: Kind) -> AsyncIterator[Deployment]:
    async with run_upstream(kind) as upstream:
        if kind == "bedrock":
            provider = LitellmProvider("bedrock-test", kind, upstream.base_url, None, AWS)
        else:
            provider = LitellmProvider(f"{kind}-test", kind, upstream.base_url, API_KEY, {})
        try:
            yield Deployment(upstream, provider)
        finally:
            await provider.close()


@pytest.fixture
async def anthropic() -> AsyncIterator[Deployment]:
    async for deployment in _deployment("anthropic"):
        yield deployment


@pytest.fixture
async def gemini() -> AsyncIterator[Deployment]:
    async for deployment in _deployment("gemini"):
        yield deployment


@pytest.fixture
async def bedrock() -> AsyncIterator[Deployment]:
    async for deployment in _deployment("bedrock"):
        yield deployment
