"""Tokens minted by one replica verified by another, across key rotation, on a real database."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.access_tokens import TokenVerifier, mint_token
from gateway.auth.keys import SigningKey, SigningKeyStore, new_signing_key
from gateway.errors import AuthenticationFailed

ISSUER = "http://localhost:8080"
AUDIENCE = "llm-gateway"


def mint(key: SigningKey, team: str = "search") -> str:
    return mint_token(
        key,
        issuer=ISSUER,
        audience=AUDIENCE,
        team=team,
        subject="client-1",
        client_id="client-1",
        scopes=["gateway:invoke"],
        ttl_s=600,
        now=time.time(),
    )


async def test_token_from_one_replica_verifies_on_another(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """A token issued by replica A is accepted by replica B, which loads keys from the database."""
    issuer_side, api_side = engines
    token = mint(await SigningKeyStore(issuer_side).current())
    verifier = TokenVerifier(ISSUER, AUDIENCE, SigningKeyStore(api_side))
    principal = await verifier.verify(token)
    assert (principal.team, principal.client_id, principal.issuer) == ("search", "client-1", ISSUER)
    assert principal.scopes == {"gateway:invoke"}


async def test_rotation_elsewhere_old_and_new_tokens_verify(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """After `keys rotate` on another replica, tokens signed by both keys verify here."""
    issuer_side, api_side = engines
    issuer_store = SigningKeyStore(issuer_side)
    old_token = mint(await issuer_store.current(), team="old")
    clock = [0.0]
    verifier = TokenVerifier(
        ISSUER, AUDIENCE, SigningKeyStore(api_side, monotonic=lambda: clock[0])
    )
    assert (await verifier.verify(old_token)).team == "old"

    new_key = await issuer_store.rotate()
    clock[0] += 2  # past the reload interval
    assert (await verifier.verify(mint(new_key, team="new"))).team == "new"
    assert (await verifier.verify(old_token)).team == "old"


async def test_token_signed_by_a_key_not_in_the_database_is_refused(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """A well-formed token from a key this gateway never stored gets 401."""
    _, api_side = engines
    store = SigningKeyStore(api_side)
    await store.current()
    foreign = mint(new_signing_key(datetime.now(UTC)))
    with pytest.raises(AuthenticationFailed):
        await TokenVerifier(ISSUER, AUDIENCE, store).verify(foreign)
