"""A gateway reaching PostgreSQL through a proxy a test can cut or freeze (a refused or
hung database while the shared server runs on)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from sqlalchemy.engine import make_url

from gateway import db
from gateway.app import build_app
from gateway.settings import Settings
from tests.support.admin_token import admin_token
from tests.support.freezable_proxy import FreezableProxy
from tests.support.gateway import serve_asgi

POLICY = """
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  demo: {models: [m]}
"""


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@asynccontextmanager
async def gateway_behind(
    database_url: str, proxy: FreezableProxy, tmp_path: Path
) -> AsyncIterator[tuple[str, str]]:
    """(origin, admin token) of a gateway reaching `database_url` through `proxy`, with a
    pooled connection that has served a request (idle: the next request pre-pings it).
    The proxy is thawed before the gateway stops: its shutdown writes to the database."""
    await db.migrate(database_url)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "bundle.yaml").write_text(POLICY)
    proxied = make_url(database_url).set(port=proxy.port)
    settings = Settings(
        database_url=proxied.render_as_string(hide_password=False),
        policy_dir=policies,
        ledger_spool_dir=str(tmp_path / "spool"),
    )
    async with serve_asgi(build_app(settings)) as origin:
        token = await admin_token(settings)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{origin}/admin/audit", headers=bearer(token)) as reply:
                assert reply.status == 200, await reply.text()
        yield origin, token
        proxy.thaw()
