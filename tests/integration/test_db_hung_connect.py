"""A hung PostgreSQL while getting a connection: a new one that logs in but answers no
query, or a pooled one whose pre-ping gets no answer. Either fails within the connect
timeout, not the statement timeout (30 s), and `gateway serve` refuses to start in
bounded time instead of hanging.

Before, SQLAlchemy's set-up queries on a new connection and the pool's pre-ping each
waited the statement timeout (a migration's connection: forever), so the first request
after the database hung waited ~30 s for its 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from gateway import db
from tests.support.freezable_proxy import FreezableProxy
from tests.support.hung_postgres import HungPostgres
from tests.support.processes import free_port, run_gateway
from tests.support.proxied_gateway import bearer, gateway_behind

# A short connect timeout and a long statement timeout: which one a wait took shows.
CONNECT_S, STATEMENT_S = 1.0, 20.0
# The connect timeout, a discarded connection's 2 s close, a second connect: far under
# STATEMENT_S, with room for a loaded machine.
CONNECTION_BOUND_S = 12.0


@pytest.fixture
def short_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "PG_CONNECT_TIMEOUT_S", CONNECT_S)
    monkeypatch.setattr(db, "PG_STATEMENT_TIMEOUT_S", STATEMENT_S)


@pytest.mark.usefixtures("short_connect")
@pytest.mark.parametrize("bound_statements", [True, False], ids=["bounded", "migration"])
async def test_a_new_connection_to_a_server_that_logs_in_then_hangs_fails_at_connect(
    bound_statements: bool,
) -> None:
    """'cannot connect: TimeoutError' within the connect timeout, statements bounded or not."""
    with HungPostgres(answers_handshake=True) as hung:
        engine = db.create_engine(
            f"postgresql+asyncpg://u:p@127.0.0.1:{hung.port}/db", bound_statements=bound_statements
        )
        started = time.monotonic()
        try:
            with pytest.raises(db.OperationalError, match="cannot connect: TimeoutError"):
                async with asyncio.timeout(60), engine.connect() as conn:  # not forever
                    await conn.exec_driver_sql("SELECT 1")
        finally:
            await engine.dispose()
        assert time.monotonic() - started < CONNECTION_BOUND_S
        assert hung.connections == 1


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[FreezableProxy]:
    parsed = make_url(postgres_url)
    with FreezableProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
        yield proxy


@pytest.fixture
async def gateway(
    postgres_url: str, proxy: FreezableProxy, tmp_path: Path, short_connect: None
) -> AsyncIterator[tuple[str, str]]:
    """(origin, admin token) of a gateway reaching PostgreSQL through the proxy, with a
    pooled connection that has served a request."""
    async with gateway_behind(postgres_url, proxy, tmp_path) as served:
        yield served


async def test_the_first_request_after_the_database_hangs_waits_the_connect_timeout(
    gateway: tuple[str, str], proxy: FreezableProxy
) -> None:
    """A pooled connection's pre-ping to a hung server: 503 database_unavailable within
    the connect timeout, not the statement timeout; answered again once it is back."""
    origin, token = gateway
    proxy.freeze()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        for path in ("/admin/policy", "/admin/audit", "/finance/reports/usage?month=2026-01"):
            started = time.monotonic()
            async with http.get(f"{origin}{path}", headers=bearer(token)) as reply:
                body = await reply.json()
            assert reply.status == 503, body
            assert body["error"]["code"] == "database_unavailable"
            assert time.monotonic() - started < CONNECTION_BOUND_S, path
    proxy.thaw()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{origin}/admin/audit", headers=bearer(token)) as reply:
            assert reply.status == 200, await reply.text()


@pytest.mark.parametrize("migrate", [True, False], ids=["migrating", "no-migrate"])
@pytest.mark.parametrize("answers_handshake", [False, True], ids=["silent", "after-login"])
def test_serve_against_a_hung_database_refuses_to_start_in_bounded_time(
    tmp_path: Path, answers_handshake: bool, migrate: bool
) -> None:
    """One plain line naming host:port and 'did not answer', exit 1, within seconds."""
    with HungPostgres(answers_handshake=answers_handshake) as hung:
        env = {
            "GATEWAY_DATABASE_URL": f"postgresql+asyncpg://u:p@127.0.0.1:{hung.port}/db",
            "GATEWAY_PORT": str(free_port()),
            "GATEWAY_REDIS_URL": "",
            "GATEWAY_LEDGER_SPOOL_DIR": str(tmp_path),
        }
        started = time.monotonic()
        done = run_gateway("serve", *(() if migrate else ("--no-migrate",)), cwd=tmp_path, env=env)
        took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot connect to ") and f"127.0.0.1:{hung.port}" in last
    assert "did not answer" in last, last
    assert took < 20, took  # the real connect timeout: 5 s
