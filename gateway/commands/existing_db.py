"""CLI commands open the database that is there; only `migrate` and `serve` create one.

A report or a usage view run against a mistyped SQLite path would otherwise
create an empty file, migrate it, and show zero usage as if it were true; a
`policy apply` or `clients create` would write to a new database no gateway
serves, and say it succeeded. Read-only commands never migrate either; a
command that writes migrates a database that exists.
"""

from __future__ import annotations

from pathlib import Path


class DatabaseNotReady(Exception):
    """The database is missing or not at this gateway's schema; the message says what to do."""


def shown(url: str) -> str:
    """The database as an operator recognises it: a SQLite file's path, else the URL
    without its password."""
    from gateway.db import async_url

    parsed = async_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    return parsed.render_as_string(hide_password=True)


def sqlite_file_missing(database: str | None) -> str | None:
    """The SQLite file's path when it does not exist (None for an in-memory database)."""
    if database in (None, "", ":memory:") or Path(database).is_file():
        return None
    return database


def require_existing(url: str) -> None:
    """Raise DatabaseNotReady when `url` is a SQLite file that does not exist: connecting
    would create it. (A PostgreSQL database that does not exist refuses the connection.)"""
    from gateway.db import async_url

    parsed = async_url(url)
    missing = (
        sqlite_file_missing(parsed.database) if parsed.get_backend_name() == "sqlite" else None
    )
    if missing is not None:
        raise DatabaseNotReady(
            f"database {missing} does not exist: check GATEWAY_DATABASE_URL "
            "(`gateway migrate` or `gateway serve` creates it)"
        )


async def require_migrated(url: str) -> None:
    """Raise DatabaseNotReady unless the database at `url` exists at the newest schema.

    A driver's own error (PostgreSQL unreachable, a bad password) propagates as is.
    """
    from gateway.db import SchemaNotCurrent, check_schema

    require_existing(url)  # looked first: connecting would create the file
    try:
        await check_schema(url)
    except SchemaNotCurrent as problem:
        raise DatabaseNotReady(f"database {shown(url)} is not migrated: {problem}") from None
