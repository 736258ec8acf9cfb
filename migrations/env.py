"""Alembic environment: runs migrations on the connection `gateway.db.migrate` hands over.

`migrate()` passes a live (sync-facing) connection in `config.attributes`, already
under the migration lock. Run from the `alembic` command line instead (for example
`alembic revision --autogenerate` with a config built by `gateway.db.alembic_config`),
it opens its own async engine and hands its connection over with `run_sync`.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

# Modules that declare tables register them on `metadata`; autogenerate must see them all.
import gateway.audit
import gateway.auth.clients
import gateway.auth.issuer_record
import gateway.auth.keys
import gateway.policy.versions
import gateway.usage.ledger_table  # noqa: F401
from gateway.db import create_engine, metadata

config = context.config


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: autogenerate batch (copy-and-move) operations.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run_on)
            await conn.commit()
    finally:
        await engine.dispose()


def _run_offline(url: str) -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    url = config.get_main_option("sqlalchemy.url") or ""
    connection = config.attributes.get("connection")
    if context.is_offline_mode():
        _run_offline(url)
    elif connection is not None:
        _run_on(connection)
    else:
        asyncio.run(_run_with_own_engine(url))


_main()
