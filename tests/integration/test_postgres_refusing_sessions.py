"""PostgreSQL refusing sessions with a server error (probe p10): a database whose
connections are turned off (`ALLOW_CONNECTIONS false`), as a server starting up or
shutting down in a failover answers (SQLSTATE 57P03). Those were DBAPIErrors, not
outages: every request logged an "unhandled error" trace, `/oauth/token` answered in
OpenAI's error shape, and the CLI printed SQLAlchemy's two lines without host:port."""

from __future__ import annotations

import logging
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from gateway import db
from gateway.app import build_app
from gateway.settings import Settings
from tests.support.admin_token import admin_token
from tests.support.gateway import serve_asgi
from tests.support.processes import run_gateway

POLICY = "providers:\n  demo: {type: mock}\nteams:\n  demo: {models: []}\n"


async def _admin(server_url: str, *statements: str) -> None:
    url = make_url(server_url).set(drivername="postgresql", database="postgres")
    connection = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@asynccontextmanager
async def refusing_database(postgres_url: str) -> AsyncIterator[tuple[str, object]]:
    """A migrated database of its own, and a switch that turns its connections off (and
    ends those open). Dropped afterwards."""
    name = f"gateway_refusing_{secrets.token_hex(4)}"
    await _admin(postgres_url, f'CREATE DATABASE "{name}"')
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)

    async def refuse() -> None:
        await _admin(
            postgres_url,
            f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
        )

    try:
        await db.migrate(url)
        yield url, refuse
    finally:
        await _admin(
            postgres_url,
            f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true',
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        )


async def test_the_server_answers_503_in_each_endpoints_shape_and_logs_no_trace(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "bundle.yaml").write_text(POLICY)
    async with refusing_database(postgres_url) as (url, refuse):
        settings = Settings(
            database_url=url, policy_dir=policies, ledger_spool_dir=str(tmp_path / "spool")
        )
        async with serve_asgi(build_app(settings)) as origin:
            token = await admin_token(settings)
            admin = {"authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{origin}/admin/clients", headers=admin) as reply:
                    assert reply.status == 200, await reply.text()
                await refuse()  # type: ignore[operator]
                caplog.clear()
                form = {"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"}
                async with http.post(f"{origin}/oauth/token", data=form) as reply:
                    token_status, token_body = reply.status, await reply.json()
                    token_retry = reply.headers.get("retry-after")
                async with http.get(f"{origin}/admin/clients", headers=admin) as reply:
                    admin_status, admin_body = reply.status, await reply.json()
    assert (token_status, token_body["error"], token_retry) == (503, "temporarily_unavailable", "1")
    assert admin_status == 503 and admin_body["error"]["code"] == "database_unavailable"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], errors
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "database unavailable: answered 503" in warned


@pytest.mark.parametrize(
    "command", [("policy", "history"), ("migrate",), ("token", "--team", "demo"), ("serve",)]
)
async def test_a_command_says_the_server_refused_in_one_line(
    tmp_path: Path, postgres_url: str, command: tuple[str, ...]
) -> None:
    shutil.copytree(Path(__file__).parents[2] / "policies", tmp_path / "policies")
    async with refusing_database(postgres_url) as (url, refuse):
        await refuse()  # type: ignore[operator]
        done = run_gateway(
            *command, cwd=tmp_path, env={"GATEWAY_DATABASE_URL": url, "GATEWAY_REDIS_URL": ""}
        )
    server = make_url(url)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: cannot connect to PostgreSQL database")
    assert f"{server.host}:{server.port}" in lines[0]
    assert "refused the session" in lines[0] and "not currently accepting connections" in lines[0]
    assert str(server.password) not in lines[0] and "sqlalche" not in lines[0]
