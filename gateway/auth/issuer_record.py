"""The issuer URL and audience the server runs with, recorded in the database.

`gateway serve` writes them at start (`record_served_issuer`); `gateway token`
reads them (`served_issuer`) so a token minted by the CLI carries the `iss`
and `aud` the server checks, even when the CLI runs with another environment
(no GATEWAY_ISSUER_URL, or another port). With them, the address on this host where
that server answers /admin (`served_admin_url`), which `gateway usage` asks, and the
host and ports it listens on (`served_listener`), which the policy commands refuse as
an `api_base` as that server does. Rows of
`served_settings` are plain name/value pairs; these are not secret (the response id
key in another row is: `response_id_key.py`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import metadata

ISSUER_URL = "issuer_url"
AUDIENCE = "audience"
ADMIN_URL = "admin_url"
LISTENER = "listener"
# The settings a listener is recorded as (policy/upstreams.py `listener_from_env` reads them).
LISTENER_SETTINGS = ("GATEWAY_HOST", "GATEWAY_PORT", "GATEWAY_ADMIN_PORT")

served_settings = sa.Table(
    "served_settings",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True, slots=True)
class ServedIssuer:
    issuer_url: str
    audience: str


async def record_served_issuer(
    engine: AsyncEngine,
    issuer: ServedIssuer,
    admin_url: str | None = None,
    listener: Mapping[str, str] | None = None,
) -> None:
    """Store what the server signs and checks with, where it answers /admin and where it
    listens (`LISTENER_SETTINGS` and their values), replacing what an earlier start
    stored."""
    now = datetime.now(UTC)
    rows = [
        {"name": ISSUER_URL, "value": issuer.issuer_url, "updated_at": now},
        {"name": AUDIENCE, "value": issuer.audience, "updated_at": now},
    ]
    if admin_url is not None:
        rows.append({"name": ADMIN_URL, "value": admin_url, "updated_at": now})
    if listener is not None:
        value = json.dumps({name: listener[name] for name in LISTENER_SETTINGS if name in listener})
        rows.append({"name": LISTENER, "value": value, "updated_at": now})
    names = [ISSUER_URL, AUDIENCE, ADMIN_URL, LISTENER]
    async with engine.begin() as conn:  # delete + insert: the same on SQLite and PostgreSQL
        await conn.execute(served_settings.delete().where(served_settings.c.name.in_(names)))
        await conn.execute(served_settings.insert(), rows)


async def served_issuer(engine: AsyncEngine) -> ServedIssuer | None:
    """What the last `gateway serve` on this database recorded; None if none has run."""
    async with engine.connect() as conn:
        result = await conn.execute(
            sa.select(served_settings.c.name, served_settings.c.value).where(
                served_settings.c.name.in_([ISSUER_URL, AUDIENCE])
            )
        )
        values = {name: value for name, value in result}
    if ISSUER_URL not in values or AUDIENCE not in values:
        return None
    return ServedIssuer(values[ISSUER_URL], values[AUDIENCE])


async def served_admin_url(engine: AsyncEngine) -> str | None:
    """Where the last `gateway serve` on this database answered /admin on its host
    (its admin port if it had one); None if none has recorded it."""
    async with engine.connect() as conn:
        return await conn.scalar(
            sa.select(served_settings.c.value).where(served_settings.c.name == ADMIN_URL)
        )


async def served_listener(engine: AsyncEngine) -> dict[str, str]:
    """The listener settings the last `gateway serve` on this database recorded (empty if
    none did, or a row that is not what `record_served_issuer` writes)."""
    async with engine.connect() as conn:
        value = await conn.scalar(
            sa.select(served_settings.c.value).where(served_settings.c.name == LISTENER)
        )
    try:
        recorded = json.loads(value) if value is not None else {}
    except ValueError:
        return {}
    if not isinstance(recorded, dict):
        return {}
    return {
        name: recorded[name] for name in LISTENER_SETTINGS if isinstance(recorded.get(name), str)
    }
