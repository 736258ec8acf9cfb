"""A retired signing key stops verifying at its cut-off on a replica that signs nothing.

The gateway runs in-process; `keys rotate` is done through a second engine on the same
database, as the CLI or another replica does it. The served replica never signs a token,
so only its background reload of the key set can tell it of the rotation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

from gateway.auth.access_tokens import mint_token
from gateway.auth.keys import SigningKey, SigningKeyStore
from gateway.db import create_engine
from tests.support.gateway import RunningGateway, running_gateway

POLICY = """\
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  demo: {models: ["*"]}
"""
TTL_S = 1
LEEWAY_S = 2
CUTOFF_S = TTL_S + LEEWAY_S + 1  # README `keys rotate`: TTL + leeway + 1 s after rotation


@dataclass
class Setup:
    gw: RunningGateway
    http: httpx.AsyncClient
    elsewhere: SigningKeyStore  # the CLI's (or another replica's) view of the keys

    async def status(self, token: str) -> int:
        reply = await self.http.get("/v1/models", headers={"authorization": f"Bearer {token}"})
        return reply.status_code


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    settings = {"token_ttl_s": TTL_S, "token_leeway_s": LEEWAY_S}
    async with running_gateway(tmp_path, POLICY, **settings) as gw:
        engine = create_engine(gw.settings.database_url)
        try:
            async with httpx.AsyncClient(base_url=gw.origin, timeout=10) as http:
                yield Setup(gw, http, SigningKeyStore(engine))
        finally:
            await engine.dispose()


def forged(setup: Setup, key: SigningKey, *, issued_at: float, ttl_s: int = TTL_S) -> str:
    """A token as one holding `key` (leaked) can sign it: fresh jti, any time it likes."""
    return mint_token(
        key,
        issuer=setup.gw.settings.issuer_url,
        audience=setup.gw.settings.audience,
        team="demo",
        subject="leaked",
        client_id="leaked",
        scopes=["gateway:invoke"],
        ttl_s=ttl_s,
        now=issued_at,
    )


async def test_a_retired_key_stops_at_its_cut_off_on_a_replica_that_signs_nothing(
    setup: Setup,
) -> None:
    """After `keys rotate` elsewhere, a new token of the old key verifies until TTL + leeway
    + 1 s after the rotation, then gets 401, though this replica never signed a token."""
    old = await setup.elsewhere.current()
    assert await setup.status(forged(setup, old, issued_at=time.time())) == 200
    new = await setup.elsewhere.rotate()
    rotated = time.time()
    await asyncio.sleep(1.5)
    # Before the cut-off. (No token of the new key yet: its unknown kid would make this
    # replica reload the key set, and a replica nobody sends new tokens to must learn too.)
    assert await setup.status(forged(setup, old, issued_at=time.time())) == 200
    await asyncio.sleep(max(0.0, rotated + CUTOFF_S + 0.5 - time.time()))
    assert await setup.status(forged(setup, old, issued_at=time.time())) == 401
    assert await setup.status(forged(setup, new, issued_at=time.time())) == 200


async def test_a_token_used_before_rotation_stops_at_its_keys_cut_off(setup: Setup) -> None:
    """A token of the old key, verified (and cached) before the rotation, whose exp (with
    leeway) lies past the key's cut-off, gets 401 from the cut-off on."""
    old = await setup.elsewhere.current()
    # The latest a holder of the key can make it live: iat and nbf at the leeway's edge.
    cached = forged(setup, old, issued_at=time.time() + LEEWAY_S, ttl_s=TTL_S + LEEWAY_S)
    assert await setup.status(cached) == 200
    await setup.elsewhere.rotate()
    rotated = time.time()
    await asyncio.sleep(max(0.0, rotated + CUTOFF_S + 0.5 - time.time()))
    # exp + leeway is still ahead: only the key's cut-off can refuse it now.
    assert time.time() < rotated + 2 * LEEWAY_S + TTL_S
    assert await setup.status(cached) == 401
