"""Read-only commands open the database that is there; they never create or migrate one.

`gateway migrate` and `gateway serve` create and migrate. A report or a usage view
run against a mistyped SQLite path would otherwise create an empty file, migrate
it, and show zero usage as if it were true.
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


async def require_migrated(url: str) -> None:
    """Raise DatabaseNotReady unless the database at `url` exists at the newest schema.

    A driver's own error (PostgreSQL unreachable, a bad password) propagates as is.
    """
    from gateway.db import SchemaNotCurrent, async_url, check_schema

    parsed = async_url(url)
    missing = (
        sqlite_file_missing(parsed.database) if parsed.get_backend_name() == "sqlite" else None
    )
    if missing is not None:  # connecting would create the file: looked first
        raise DatabaseNotReady(
            f"database {missing} does not exist: check GATEWAY_DATABASE_URL "
            "(`gateway migrate` or `gateway serve` creates it)"
        )
    try:
        await check_schema(url)
    except SchemaNotCurrent as problem:
        raise DatabaseNotReady(f"database {shown(url)} is not migrated: {problem}") from None
