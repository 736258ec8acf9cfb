"""PostgreSQL refusing connections, or hanging (a stopped server: the TCP handshake
completes, nothing answers): the paths that must read it answer 503
`database_unavailable` with retry-after, in bounded time, with one warning line each.

Before, asyncpg's own errors passed SQLAlchemy unwrapped: a refused connection was a 500
`internal_error` with an "unhandled error" traceback, and a hung server held the token
endpoint, the admin API and finance's report forever (no connect or statement timeout).
The database is reached through a proxy the test cuts or freezes; the shared server runs on.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import httpx2 as httpx
import pytest
from sqlalchemy.engine import make_url

from gateway import db
from tests.support.freezable_proxy import FreezableProxy
from tests.support.processes import run_gateway
from tests.support.proxied_gateway import bearer, gateway_behind
from tests.support.serving import serve_process

# What must read the database: the token endpoint, the admin API, finance's report.
READS = [
    ("POST", "/oauth/token"),
    ("GET", "/admin/policy/versions"),
    ("GET", "/admin/audit"),
    ("GET", "/finance/reports/usage?month=2026-01"),
]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
# The grace (2 s), uvicorn's deadline, the ledger's last write, the pool's closes: well
# under what the database's wake-up would take (never, in the test).
SHUTDOWN_BOUND_S = 30.0
POOL_SIZE = 5  # db.create_engine's
# Short bounds, so a hung database costs the test seconds (the real ones: db.py).
CONNECT_S, STATEMENT_S = 1.0, 1.5


# PostgreSQL only (conftest's `database_url`, its postgres side); SQLite's outages:
# test_db_vanished.py, test_ledger_process.py.
pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture
def proxy(database_url: str) -> Iterator[FreezableProxy]:
    parsed = make_url(database_url)
    with FreezableProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
        yield proxy


@pytest.fixture
async def gateway(
    database_url: str, proxy: FreezableProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, str]]:
    """(origin, admin token) of a gateway reaching PostgreSQL through the proxy."""
    monkeypatch.setattr(db, "PG_CONNECT_TIMEOUT_S", CONNECT_S)
    monkeypatch.setattr(db, "PG_STATEMENT_TIMEOUT_S", STATEMENT_S)
    async with gateway_behind(database_url, proxy, tmp_path) as served:
        yield served


async def _call(http: aiohttp.ClientSession, origin: str, token: str, method: str, path: str):
    if method == "POST":  # a client the gateway must look up
        form = {"grant_type": "client_credentials", "client_id": "c1", "client_secret": "s"}
        return await http.post(f"{origin}{path}", data=form)
    return await http.get(f"{origin}{path}", headers=bearer(token))


def _assert_database_unavailable(
    path: str, status: int, headers: object, body: dict[str, object]
) -> None:
    assert status == 503, body
    assert headers["retry-after"] == "1"  # type: ignore[index]
    if path == "/oauth/token":  # the token endpoint answers in OAuth's shape (RFC 6749 §5.2)
        assert body == {
            "error": "temporarily_unavailable",
            "error_description": "The gateway's database is unavailable; try again shortly.",
        }
        return
    assert body["error"] == {
        "message": "The gateway's database is unavailable; try again shortly.",
        "type": "api_error",
        "param": None,
        "code": "database_unavailable",
    }


@pytest.mark.parametrize("outage", ["refused", "hung"])
async def test_token_admin_and_finance_answer_503_in_bounded_time(
    gateway: tuple[str, str],
    proxy: FreezableProxy,
    outage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each read: 503 database_unavailable + retry-after, one warning line naming the
    path, no "unhandled error" trace; a hung server within its connect or statement
    timeout (a pooled connection's pre-ping included), not forever."""
    origin, token = gateway
    proxy.cut() if outage == "refused" else proxy.freeze()
    caplog.set_level(logging.WARNING, logger="gateway")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for method, path in READS:
            started = time.monotonic()
            reply = await _call(http, origin, token, method, path)
            body = await reply.json()
            _assert_database_unavailable(path, reply.status, reply.headers, body)
            # At most: a pre-ping's statement timeout, the connection's 2 s close, a connect.
            assert time.monotonic() - started < STATEMENT_S + 2 + CONNECT_S + 2, path
    app_lines = [r for r in caplog.records if r.name in ("gateway.app", "gateway.api.oauth")]
    assert [r.getMessage() for r in app_lines] == ["database unavailable: answered 503"] * 4
    assert all(r.exc_info is None for r in app_lines)
    proxy.restore()
    proxy.thaw()
    async with aiohttp.ClientSession() as http:  # back: answered again, nothing stuck
        reply = await _call(http, origin, token, "GET", "/admin/audit")
        assert reply.status == 200, await reply.text()


async def test_statements_are_bounded_but_migrations_are_not(
    database_url: str, proxy: FreezableProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung server fails a statement after the statement timeout (OperationalError, the
    connection discarded); a migration may wait on another replica's lock for longer."""
    monkeypatch.setattr(db, "PG_STATEMENT_TIMEOUT_S", STATEMENT_S)
    url = make_url(database_url).set(port=proxy.port).render_as_string(hide_password=False)
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
            proxy.freeze()
            started = time.monotonic()
            with pytest.raises(db.OperationalError, match="statement failed: TimeoutError"):
                await conn.exec_driver_sql("SELECT 2")
            assert time.monotonic() - started < STATEMENT_S + 3
        proxy.thaw()
        async with engine.connect() as conn:  # a fresh connection, not the half-answered one
            assert (await conn.exec_driver_sql("SELECT 3")).scalar() == 3
    finally:
        proxy.thaw()
        await engine.dispose()
    unbounded = db.create_engine(url, bound_statements=False)
    try:
        async with unbounded.connect() as conn:
            await conn.exec_driver_sql(f"SELECT pg_sleep({STATEMENT_S + 0.5})")
    finally:
        await unbounded.dispose()


def test_sigterm_with_a_hung_database_exits_after_the_grace_and_spools_every_row(
    database_url: str, proxy: FreezableProxy, tmp_path: Path
) -> None:
    """SIGTERM while PostgreSQL hangs: the process exits within the grace plus its bounded
    shutdown (the ledger's write timeout, a 2 s close per pooled connection), not when the
    database wakes; every answered request's row is in the database or the spool.
    Before, closing the pooled connections waited for the server's goodbye forever."""
    asyncio.run(db.migrate(database_url))
    proxied = make_url(database_url).set(port=proxy.port).render_as_string(hide_password=False)
    env = {"GATEWAY_DATABASE_URL": proxied, "GATEWAY_DRAIN_GRACE_S": "2"}
    admin_token = run_gateway(
        "token",
        "--team",
        "ops",
        "--scope",
        "gateway:admin",
        cwd=tmp_path,
        env={"GATEWAY_DATABASE_URL": database_url},
    )
    invoke = run_gateway(
        "token", "--team", "demo", cwd=tmp_path, env={"GATEWAY_DATABASE_URL": database_url}
    )
    admin = admin_token.stdout.split()[-1]
    answered: list[str] = []
    with serve_process(tmp_path, env) as server:
        with httpx.Client(base_url=server.origin, timeout=30) as http:

            def chat() -> None:
                reply = http.post(
                    "/v1/chat/completions",
                    json=CHAT,
                    headers={"Authorization": f"Bearer {invoke.stdout.split()[-1]}"},
                )
                assert reply.status_code == 200, reply.text
                answered.append(reply.headers["x-request-id"])

            chat()
            # Reads side by side leave the pool several connections, idle when it hangs.
            with ThreadPoolExecutor(POOL_SIZE) as pool:
                reads = pool.map(lambda _: _read_audit(server.origin, admin), range(POOL_SIZE))
                assert set(reads) == {200}
            proxy.freeze()
            for _ in range(3):
                chat()  # inference needs no database: answered, rows queued
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        try:
            status = server.process.wait(SHUTDOWN_BOUND_S)
        finally:
            proxy.thaw()
        assert time.monotonic() - started < SHUTDOWN_BOUND_S
        assert status in (0, 143), server.stderr()
    spooled = "".join(path.read_text() for path in tmp_path.rglob("ledger-*.jsonl"))
    stored = asyncio.run(_request_ids(database_url))
    assert [i for i in answered if i not in stored and i not in spooled] == []
    assert "Traceback" not in server.stderr()


def _read_audit(origin: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{origin}/admin/audit", headers=headers, timeout=30).status_code


async def _request_ids(url: str) -> set[str]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.exec_driver_sql("SELECT request_id FROM usage_ledger")
            return {request_id for (request_id,) in rows}
    finally:
        await engine.dispose()
