"""Migrations and the signing-key store against real SQLite and PostgreSQL (gateway/db.py)."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.access_tokens import TokenVerifier, mint_token
from gateway.auth.keys import SigningKey, SigningKeyStore, new_signing_key
from gateway.db import alembic_config, create_engine, locked_transaction, migrate
from gateway.errors import AuthenticationFailed

REPO = Path(__file__).resolve().parents[2]


def head_revision(url: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    return head


async def schema_state(url: str) -> tuple[list[str], set[str]]:
    """(revisions in alembic_version, table names) as a user inspecting the database sees them."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            versions = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            revisions = list(versions.scalars())
            tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    return revisions, tables


async def test_migrate_twice_is_a_no_op(database_url: str) -> None:
    """Running `gateway migrate` again on a current database changes nothing and succeeds."""
    await migrate(database_url)
    first = await schema_state(database_url)
    await migrate(database_url)
    assert await schema_state(database_url) == first
    revisions, tables = first
    assert revisions == [head_revision(database_url)]
    assert {"alembic_version", "signing_keys"} <= tables


async def test_tables_match_migrations(database_url: str) -> None:
    """The tables declared in code are exactly what the migrations build (autogenerate: no diff).

    Also runs env.py the way the `alembic` command line does: with its own engine.
    """
    config = alembic_config(database_url)
    await asyncio.to_thread(command.upgrade, config, "head")
    await asyncio.to_thread(command.check, config)  # raises when a change is not migrated


async def test_concurrent_migrations_all_succeed(database_url: str) -> None:
    """Replicas starting together on an empty database all come up; the schema is built once."""
    results = await asyncio.gather(
        *(migrate(database_url) for _ in range(4)), return_exceptions=True
    )
    assert [r for r in results if isinstance(r, BaseException)] == []
    revisions, tables = await schema_state(database_url)
    assert revisions == [head_revision(database_url)]
    assert "signing_keys" in tables


async def test_fresh_sqlite_file_opened_by_many_connections_at_once(tmp_path: Path) -> None:
    """Connections racing to put a brand-new file in WAL mode all open (SQLite does not
    wait on its busy timeout for that switch; the gateway retries it)."""
    for round_ in range(25):
        engines = [
            create_engine(f"sqlite+aiosqlite:///{tmp_path}/fresh{round_}.db") for _ in range(6)
        ]
        try:

            async def open_one(engine: AsyncEngine) -> str:
                async with engine.connect() as conn:
                    mode = await conn.execute(sa.text("PRAGMA journal_mode"))
                    return str(mode.scalar_one())

            modes = await asyncio.gather(*(open_one(e) for e in engines), return_exceptions=True)
        finally:
            await asyncio.gather(*(e.dispose() for e in engines))
        assert modes == ["wal"] * len(engines), modes


async def run_in_processes(code: str, url: str, count: int) -> list[str]:
    """Run `code` (with the database URL as argv[1]) in `count` processes at once; their stdout."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            url,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(count)
    ]
    async with asyncio.timeout(120):
        results = await asyncio.gather(*(p.communicate() for p in procs))
    for proc, (_, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr.decode()
    return [stdout.decode().strip() for stdout, _ in results]


async def test_concurrent_migrations_from_separate_processes(database_url: str) -> None:
    """Three processes running migrate() at once all exit 0."""
    code = "import asyncio, sys; from gateway.db import migrate; asyncio.run(migrate(sys.argv[1]))"
    await run_in_processes(code, database_url, 3)
    assert (await schema_state(database_url))[0] == [head_revision(database_url)]


KEY_FROM_NEW_PROCESS = """
import asyncio, sys
from gateway.auth.keys import SigningKeyStore
from gateway.db import create_engine

async def main() -> None:
    engine = create_engine(sys.argv[1])
    try:
        print((await SigningKeyStore(engine).current()).kid)
    finally:
        await engine.dispose()

asyncio.run(main())
"""


async def test_replica_processes_agree_on_one_key(database_url: str, engine: AsyncEngine) -> None:
    """Four replicas starting at once on a database without keys all sign with the same key."""
    kids = await run_in_processes(KEY_FROM_NEW_PROCESS, database_url, 4)
    assert len(set(kids)) == 1, kids
    assert [k.kid for k in await SigningKeyStore(engine).list_keys()] == kids[:1]


async def test_key_store_creates_exactly_one_key_under_concurrency(
    database_url: str, engine: AsyncEngine
) -> None:
    """Two replicas asking for a signing key on an empty database agree on one key."""
    other = create_engine(database_url)
    # Keys made up front: every store reaches the database at the same moment.
    made = [new_signing_key(datetime.now(UTC)) for _ in range(4)]
    try:
        stores = [
            SigningKeyStore(e, new_key=lambda now: made.pop())
            for e in (engine, other, engine, other)
        ]
        results = await asyncio.gather(*(s.current() for s in stores), return_exceptions=True)
    finally:
        await other.dispose()
    keys = [r for r in results if isinstance(r, SigningKey)]
    assert keys == results, results
    assert len({key.kid for key in keys}) == 1
    listed = await SigningKeyStore(engine).list_keys()
    assert [key.kid for key in listed] == [keys[0].kid]
    assert listed[0].created_at.tzinfo is not None and listed[0].retired_at is None


async def test_second_store_reads_the_stored_key(database_url: str, engine: AsyncEngine) -> None:
    """A restarted process finds the same key, with a working private half and public JWKS."""
    first = await SigningKeyStore(engine).current()
    restarted = create_engine(database_url)
    try:
        store = SigningKeyStore(restarted)
        again = await store.current()
        public = await store.verification_keys()
    finally:
        await restarted.dispose()
    assert again.kid == first.kid
    assert again.private_key.as_dict(private=True) == first.private_key.as_dict(private=True)
    assert [k.kid for k in public.keys] == [first.kid]
    assert "d" not in public.keys[0].as_dict()


async def test_rotate_keeps_old_key_verifying(engine: AsyncEngine) -> None:
    """After rotation the new key signs and the retired one is still published."""
    store = SigningKeyStore(engine)
    old = await store.current()
    new = await store.rotate()
    assert (await store.current()).kid == new.kid != old.kid
    assert {k.kid for k in (await store.verification_keys()).keys} == {old.kid, new.kid}
    listed = {k.kid: k for k in await store.list_keys()}
    assert listed[old.kid].is_retired and not listed[new.kid].is_retired
    assert (await SigningKeyStore(engine).current()).kid == new.kid


async def test_a_retired_key_verifies_nothing_it_claims_to_have_signed_later(
    engine: AsyncEngine,
) -> None:
    """A token of the old key issued after `keys rotate` (a leaked copy signed it) is
    refused at once; one issued before the rotation verifies until its cut-off."""
    store = SigningKeyStore(engine, current_ttl_s=1.0)
    old = await store.current()
    assert store.signs_until(old.kid) is None
    new = await store.rotate()
    retired_at = {k.kid: k for k in await store.list_keys()}[old.kid].retired_at
    assert retired_at is not None
    retired = retired_at.timestamp()
    assert store.signs_until(old.kid) == retired + 1.0
    assert store.signs_until(new.kid) is None
    verifier = TokenVerifier(
        "https://gw.example", "llm-gateway", store, clock=lambda: retired + 121
    )

    def signed_by(key: SigningKey, at: float) -> str:
        return mint_token(
            key, issuer="https://gw.example", audience="llm-gateway", team="t",
            subject="s", client_id="c", scopes=["gateway:invoke"], ttl_s=600, now=at,
        )  # fmt: skip

    assert (await verifier.verify(signed_by(old, retired - 5))).team == "t"
    with pytest.raises(AuthenticationFailed):
        await verifier.verify(signed_by(old, retired + 120))
    assert (await verifier.verify(signed_by(new, retired + 120))).team == "t"


async def test_a_retired_key_stops_verifying_once_its_tokens_have_expired(
    engine: AsyncEngine,
) -> None:
    """Keys rotate because one may have leaked: after the horizon its tokens are refused."""
    now = [datetime(2026, 11, 25, 12, tzinfo=UTC)]
    store = SigningKeyStore(engine, utcnow=lambda: now[0], retired_verify_s=3631)
    verifier = TokenVerifier("https://gw.example", "llm-gateway", store, clock=lambda: 0.0)
    old = await store.current()
    new = await store.rotate()

    def signed_by(key: SigningKey) -> str:  # minted "now" by the fake clock's standards
        return mint_token(
            key, issuer="https://gw.example", audience="llm-gateway", team="t",
            subject="s", client_id="c", scopes=["gateway:admin"], ttl_s=60, now=0.0,
        )  # fmt: skip

    async def live_kids(s: SigningKeyStore) -> set[str]:
        return {k.kid for k in (await s.verification_keys()).keys}

    now[0] += timedelta(seconds=3630)
    assert await live_kids(store) == {old.kid, new.kid}
    assert (await verifier.verify(signed_by(old))).team == "t"
    now[0] += timedelta(seconds=2)
    assert await live_kids(store) == {new.kid}
    with pytest.raises(AuthenticationFailed):
        await verifier.verify(signed_by(old))  # a new token (new jti): not in the cache
    later = TokenVerifier("https://gw.example", "llm-gateway", store, clock=lambda: 0.0)
    with pytest.raises(AuthenticationFailed):
        await later.verify(signed_by(old))
    assert await store.refresh_if_unknown(old.kid) is False
    restarted = SigningKeyStore(engine, utcnow=lambda: now[0], retired_verify_s=3631)
    assert await live_kids(restarted) == {new.kid}
    assert (await later.verify(signed_by(new))).team == "t"


async def test_refresh_for_unknown_kid_is_rate_limited(engine: AsyncEngine) -> None:
    """A made-up kid reloads keys at most once per interval; a real new key is found after it."""
    now = [100.0]
    reader = SigningKeyStore(engine, monotonic=lambda: now[0])
    await reader.verification_keys()
    assert await reader.refresh_if_unknown("k-made-up") is False
    rotated = await SigningKeyStore(engine).rotate()
    now[0] += 0.5
    assert await reader.refresh_if_unknown(rotated.kid) is False, "reloaded within the interval"
    now[0] += 0.6
    assert await reader.refresh_if_unknown(rotated.kid) is True


async def test_locked_transactions_serialize(engine: AsyncEngine) -> None:
    """Two read-modify-write transactions under the same lock never lose an update."""
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        await conn.execute(sa.text("INSERT INTO counter VALUES (0)"))

    async def bump() -> None:
        async with locked_transaction(engine, "counter") as conn:
            n = (await conn.execute(sa.text("SELECT n FROM counter"))).scalar_one()
            await asyncio.sleep(0.01)  # widen the race window
            await conn.execute(sa.text("UPDATE counter SET n = :n"), {"n": n + 1})

    results = await asyncio.gather(*(bump() for _ in range(5)), return_exceptions=True)
    assert results == [None] * 5
    async with engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT n FROM counter"))).scalar_one() == 5
