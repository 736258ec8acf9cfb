"""The key that binds Responses ids to their team, shared by every replica through the database.

Stored as one row of `served_settings` (base64url of 32 random bytes). The first
process to start on a database creates it; replicas starting together serialize
on `locked_transaction`, and the loser of the race reads the winner's key, so all
of them mint and accept the same ids. The key is read once at start and never logged.
Whoever can read the database can forge response ids, as whoever can read
`signing_keys` can forge tokens: the database is trusted the same for both.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.auth.issuer_record import served_settings
from gateway.db import locked_transaction
from gateway.routing.affinity import KEY_BYTES, ResponseIdKey

SETTING = "response_id_key"
LOCK_NAME = "served_settings:response_id_key"

_SELECT = sa.select(served_settings.c.value).where(served_settings.c.name == SETTING)


class ResponseIdKeyInvalid(Exception):
    """The stored key cannot be read; the message says what to do (and never shows it)."""


def _new_secret() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


async def load_response_id_key(
    engine: AsyncEngine, new_secret: Callable[[], bytes] = _new_secret
) -> ResponseIdKey:
    """The database's response id key; creates it when the database has none."""
    async with engine.connect() as conn:
        stored = await _stored(conn)
    if stored is None:
        async with locked_transaction(engine, LOCK_NAME) as conn:
            # Another replica may have created it while we waited for the lock.
            stored = await _stored(conn)
            if stored is None:
                stored = base64.urlsafe_b64encode(new_secret()).decode()
                await conn.execute(
                    served_settings.insert().values(
                        name=SETTING, value=stored, updated_at=datetime.now(UTC)
                    )
                )
    return _decoded(stored)


async def _stored(conn: AsyncConnection) -> str | None:
    value = (await conn.execute(_SELECT)).scalar_one_or_none()
    return value if isinstance(value, str) else None


def _decoded(stored: str) -> ResponseIdKey:
    try:
        return ResponseIdKey(base64.urlsafe_b64decode(stored.encode()))
    except (binascii.Error, ValueError) as error:
        raise ResponseIdKeyInvalid(
            f"served_settings row '{SETTING}' does not hold a base64url key of at least "
            f"{KEY_BYTES} bytes; delete the row to have the next start create a new one "
            "(response ids handed out before stop working)"
        ) from error
