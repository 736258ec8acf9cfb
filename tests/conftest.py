"""Shared fixtures: URLs of the real PostgreSQL and Redis the integration tests use.

`scripts/services.sh` starts both on 127.0.0.1. When one is unreachable its
tests skip with the reason, except under `CI=true`, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import create_engine, migrate
from gateway.limits.native import Build, native_state

POSTGRES_URL = os.environ.get(
    "GATEWAY_TEST_POSTGRES_URL",
    "postgresql+asyncpg://postgres:postgres@127.0.0.1:5432/gateway_test",
)
REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1")


def pytest_configure(config: pytest.Config) -> None:
    # A limits module edited since it was compiled would test the old code: refuse.
    state = native_state()
    if state.named(Build.STALE):
        pytest.exit(state.summary, returncode=4)


@pytest.fixture
def in_ci() -> bool:
    """CI=true: what may skip elsewhere must hold here."""
    return IN_CI


def _unavailable(reason: str) -> NoReturn:
    hint = f"{reason} (start it with scripts/services.sh)"
    if IN_CI:
        pytest.fail(f"CI=true: {hint}", pytrace=False)
    pytest.skip(hint)


def _asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _execute(url: URL, statement: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _admin(url: URL, statement: str) -> None:
    """Run one statement on its own event loop in a worker thread.

    A fixture may be requested from inside a running loop (an async fixture
    calling `request.getfixturevalue`), where `asyncio.run` is not allowed.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _execute(url, statement)).result()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session, dropped afterwards.

    Its name is unique, so sessions running side by side do not collide.
    """
    admin = make_url(POSTGRES_URL)
    name = f"gateway_test_{secrets.token_hex(4)}"
    try:
        _admin(admin, f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        _unavailable(f"PostgreSQL at {admin.render_as_string()} unreachable: {error}")
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        _admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, once per backend: a new SQLite file, then PostgreSQL.

    PostgreSQL is the session's database (`postgres_url`) with its `public`
    schema dropped and recreated, so each test starts from nothing.
    """
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    url: str = request.getfixturevalue("postgres_url")
    # A connection leaked by an earlier failed test must not hang the whole run.
    _admin(
        make_url(url),
        "SET lock_timeout = '10s'; DROP SCHEMA public CASCADE; CREATE SCHEMA public",
    )
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis the tests share (database 0); callers use their own key prefixes."""
    parsed = urlsplit(REDIS_URL)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as error:
        _unavailable(f"Redis at {host}:{port} unreachable: {error}")
    if not reply.startswith((b"+PONG", b"-NOAUTH")):
        _unavailable(f"Redis at {host}:{port} did not answer PING: {reply!r}")
    return REDIS_URL


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a freshly migrated database (SQLite, then PostgreSQL)."""
    await migrate(database_url)
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two replicas' engines on one migrated database."""
    await migrate(database_url)
    first, second = create_engine(database_url), create_engine(database_url)
    yield first, second
    await first.dispose()
    await second.dispose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session for the test, closed after it."""
    async with aiohttp.ClientSession() as session:
        yield session
