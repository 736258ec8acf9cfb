"""A Redis that refuses GATEWAY_REDIS_URL (a database index out of range) or is not
there logs one warning at start naming why, and the gateway serves on; /readyz's Redis
and database checks name the error's class and its cause, never a password."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import aiohttp
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.support.freezable_proxy import FreezableProxy
from tests.support.gateway import running_gateway
from tests.support.processes import free_port
from tests.support.proxied_gateway import gateway_behind

PASSWORD = "pw-7f3a9c1e"


def warnings_of(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "gateway.services"
    ]


async def readyz(origin: str) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(f"{origin}/readyz") as reply:
        return reply.status, (await reply.json())["checks"]


async def test_a_redis_database_index_out_of_range_is_named(tmp_path, caplog, redis_url):
    """`redis://…/99` on a Redis with 16 databases: a warning at start and a /readyz check
    with Redis's own words."""
    url = make_url(redis_url)  # host and port of the shared Redis
    bad = f"redis://{url.host}:{url.port or 6379}/99"
    async with running_gateway(tmp_path, "teams: {}\n", redis_url=bad) as gw:
        status, checks = await readyz(gw.origin)
    assert status == 503
    assert checks["redis"] == "error: Redis refused (ResponseError: DB index is out of range)"
    [warning] = warnings_of(caplog)
    assert f"{url.host}:{url.port or 6379}/99" in warning
    assert "ResponseError: DB index is out of range" in warning


async def test_an_unreachable_redis_is_named_without_its_password(tmp_path, caplog):
    port = free_port()  # nothing listens there
    bad = f"redis://user:{PASSWORD}@127.0.0.1:{port}/0"
    async with running_gateway(tmp_path, "teams: {}\n", redis_url=bad) as gw:
        status, checks = await readyz(gw.origin)
    assert status == 503
    assert checks["redis"].startswith("error: Redis unreachable (ConnectionError: ")
    assert f"127.0.0.1:{port}" in checks["redis"]
    [warning] = warnings_of(caplog)
    assert f"127.0.0.1:{port}/0" in warning and "ConnectionError" in warning
    logged = " ".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert PASSWORD not in logged and PASSWORD not in str(checks)


async def test_a_reachable_redis_logs_no_warning(tmp_path, caplog, redis_url):
    async with running_gateway(tmp_path, "teams: {}\n", redis_url=redis_url) as gw:
        status, checks = await readyz(gw.origin)
    assert (status, checks["redis"]) == (200, "ok")
    assert warnings_of(caplog) == []


async def test_a_database_without_the_schema_is_named(tmp_path):
    """SQLite answers but the schema is gone: the driver's own words."""
    async with running_gateway(tmp_path, "teams: {}\n") as gw:
        async with gw.services.engine.begin() as conn:
            await conn.execute(sa.text("ALTER TABLE alembic_version RENAME TO gone"))
        try:
            status, checks = await readyz(gw.origin)
        finally:
            async with gw.services.engine.begin() as conn:
                await conn.execute(sa.text("ALTER TABLE gone RENAME TO alembic_version"))
    assert status == 503
    assert checks["database"] == "error: OperationalError: no such table: alembic_version"


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[FreezableProxy]:
    parsed = make_url(postgres_url)
    with FreezableProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
        yield proxy


async def test_a_database_refusing_connections_is_named_without_its_password(
    tmp_path, postgres_url, proxy
):
    """PostgreSQL behind a cut proxy: the class, the refusal, and no password or URL."""
    password = make_url(postgres_url).password or ""
    async with gateway_behind(postgres_url, proxy, tmp_path) as (origin, _token):
        proxy.cut()
        status, checks = await readyz(origin)
        proxy.restore()
    assert status == 503
    database = checks["database"]
    assert database.startswith("error: OperationalError: "), database
    assert "refused" in database.lower() or "connect call failed" in database.lower()
    assert "@" not in database and (not password or f":{password}@" not in database)


async def test_a_hung_database_is_not_ready_within_the_checks_timeout(
    tmp_path, postgres_url, proxy
):
    """PostgreSQL frozen (it accepts, answers nothing): every /readyz answers 503 within
    the check's 0.8 s and a little, the first one too (it took 2.8 s: cancelling the
    hung connection waited for the driver), concurrent probes share one check, and the
    replica is ready again once the database answers."""
    async with gateway_behind(postgres_url, proxy, tmp_path) as (origin, _token):
        proxy.freeze()
        for _ in range(3):
            started = time.monotonic()
            results = await asyncio.gather(*(readyz(origin) for _ in range(5)))
            assert time.monotonic() - started < 1.5
            for status, checks in results:
                assert status == 503
                assert checks["database"] == "error: no answer within 0.8 s"
        proxy.thaw()
        deadline = time.monotonic() + 30
        while (await readyz(origin))[0] != 200:
            assert time.monotonic() < deadline, "not ready again"
            await asyncio.sleep(0.2)
