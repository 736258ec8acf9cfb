"""ClientRegistry and the issuer's key publishing on a real database, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import read_audit
from gateway.auth.clients import ClientRegistry, InvalidClientSpec, UnknownClient
from gateway.auth.issuer import TokenIssuer, retired_key_verify_s
from gateway.auth.keys import SigningKeyStore


async def test_create_authenticate_list(engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    """A created client authenticates with its secret only; listing never shows the secret."""
    registry = ClientRegistry(engines[0])
    record, secret = await registry.create("search", "backend", ["gateway:invoke"], "alice")
    assert record.client_id.startswith("c-") and record.scopes == ("gateway:invoke",)
    assert await registry.authenticate(record.client_id, secret) == record
    assert await registry.authenticate(record.client_id, secret + "x") is None
    assert await registry.authenticate("c-unknown", secret) is None
    stored = await registry.find(record.client_id)
    assert stored is not None and secret not in stored.secret_hash
    assert [r.client_id for r in await registry.list()] == [record.client_id]


async def test_create_refuses_bad_specs(engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    registry = ClientRegistry(engines[0])
    for team, scopes, param in (
        ("", [], "team"),
        ("two words", [], "team"),
        ("search", ["gateway:root"], "scopes"),
    ):
        with pytest.raises(InvalidClientSpec) as refused:
            await registry.create(team, None, scopes, "alice")
        assert refused.value.param == param
    record, _ = await registry.create("search", None, [], "alice")
    assert record.scopes == ("gateway:invoke",)  # the default


async def test_revocation_reaches_another_replica_within_its_refresh(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """Revoked on replica A, `is_revoked` turns true on replica B within the refresh interval."""
    here, there = ClientRegistry(engines[0]), ClientRegistry(engines[1], refresh_interval_s=0.1)
    record, secret = await here.create("search", None, [], "alice")
    await there.start()
    try:
        assert not there.is_revoked(record.client_id)
        revoked = await here.revoke(record.client_id, "bob")
        assert revoked.revoked_at is not None and here.is_revoked(record.client_id)
        started = time.monotonic()
        while not there.is_revoked(record.client_id):
            assert time.monotonic() - started < 1.0
            await asyncio.sleep(0.02)
    finally:
        await there.stop()
    assert await here.authenticate(record.client_id, secret) is None
    with pytest.raises(UnknownClient):
        await here.revoke("c-unknown", "bob")


async def test_create_and_revoke_are_audited_once_without_secrets(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """One entry per change, with the actor; revoking twice changes and audits nothing more."""
    registry = ClientRegistry(engines[0])
    record, secret = await registry.create("search", None, [], "alice")
    first = await registry.revoke(record.client_id, "bob")
    assert await registry.revoke(record.client_id, "carol") == first
    async with engines[0].connect() as conn:
        entries = await read_audit(conn)
    assert [(e.action, e.actor, e.target) for e in entries] == [
        ("client.revoke", "bob", record.client_id),
        ("client.create", "alice", record.client_id),
    ]
    stored = await registry.find(record.client_id)
    assert stored is not None
    text = repr([e.as_json() for e in entries])
    assert secret not in text and stored.secret_hash not in text


async def test_jwks_keeps_a_retired_key_until_its_tokens_have_expired(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """After rotation both keys are published; past the token lifetime only the current one."""
    keys = SigningKeyStore(engines[0], retired_verify_s=retired_key_verify_s(600))
    old = await keys.current()
    new = await keys.rotate()
    now = [time.time()]
    ticks = [0.0]

    def issuer() -> TokenIssuer:
        return TokenIssuer(
            issuer_url="https://gw.test",
            audience="llm-gateway",
            token_ttl_s=600,
            keys=keys,
            clients=ClientRegistry(engines[0]),
            clock=lambda: now[0],
            monotonic=lambda: ticks[0],
        )

    published = orjson.loads(await issuer().jwks())
    assert {k["kid"] for k in published["keys"]} == {old.kid, new.kid}
    now[0] += 3600
    published = orjson.loads(await issuer().jwks())
    assert {k["kid"] for k in published["keys"]} == {new.kid}
