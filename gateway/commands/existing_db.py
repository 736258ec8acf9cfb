"""CLI commands open the database that is there; only `migrate` and `serve` create one.

A report or a usage view run against a mistyped SQLite path would otherwise
create an empty file, migrate it, and show zero usage as if it were true; a
`policy apply` or `clients create` would write to a new database no gateway
serves, and say it succeeded. Read-only commands never migrate either; a
command that writes migrates a database that exists.

A PostgreSQL database the CLI cannot open (refused, missing, a wrong password, no
answer) is one line saying where and what to check (`connection_problem`), for every
command alike.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
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

    A driver's own error (PostgreSQL unreachable, a bad password) propagates as is:
    `connection_problem` words it.
    """
    from gateway.db import SchemaNotCurrent, check_schema

    require_existing(url)  # looked first: connecting would create the file
    try:
        await check_schema(url)
    except SchemaNotCurrent as problem:
        raise DatabaseNotReady(f"database {shown(url)} is not migrated: {problem}") from None


def database_failure(url: str, error: Exception) -> str:
    """What a command prints after `error: ` when its database work failed: where and what
    to check when it could not get in (`connection_problem`), else the driver's words."""
    return connection_problem(url, error) or f"database {type(error).__name__}: {error}"


def connection_problem(url: str, error: BaseException) -> str | None:
    """One line for an operator when `error` is PostgreSQL refusing to let the CLI in,
    or not answering: what failed, where (host:port and database, never the password)
    and what to check. None for any other error: a failed statement's, Redis's."""
    from sqlalchemy.exc import DBAPIError

    from gateway.db import async_url

    parsed = async_url(url)
    if parsed.get_backend_name() != "postgresql":
        return None
    if not isinstance(error, DBAPIError) or error.statement is not None:
        return None  # not the driver's, or connected and then a statement failed
    address = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    where = f'PostgreSQL database "{parsed.database}" at {address}'
    for cause in _causes(error):
        problem = _login_problem(cause, where, parsed.username or "")
        if problem is not None:
            return problem
    return None


def _causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and what it was raised from: SQLAlchemy's wrapper, the driver's error, the
    socket's."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _login_problem(cause: BaseException, where: str, user: str) -> str | None:
    import asyncpg

    from gateway.db import PG_CONNECT_TIMEOUT_S

    check = "check GATEWAY_DATABASE_URL"
    if isinstance(cause, asyncpg.InvalidCatalogNameError):
        return (
            f"{where} does not exist: {check} (its database name), or create the database "
            "and run `gateway migrate`"
        )
    if isinstance(cause, asyncpg.InvalidAuthorizationSpecificationError):  # password, role
        return f'{where} refused user "{user}": {cause}; {check} (its user and password)'
    if isinstance(cause, ConnectionRefusedError):
        return (
            f"cannot connect to {where}: connection refused; check that the server is "
            "running, and the host and port in GATEWAY_DATABASE_URL"
        )
    if isinstance(cause, TimeoutError):
        return (
            f"cannot connect to {where}: it did not answer within {PG_CONNECT_TIMEOUT_S:g} s; "
            "check that the server is up and reachable, and the host and port in "
            "GATEWAY_DATABASE_URL"
        )
    if isinstance(cause, asyncpg.PostgresError):  # the server said no: starting up, full...
        said = " ".join(str(cause).split())
        return (
            f"cannot connect to {where}: the server refused the session: {said} (SQLSTATE "
            f"{cause.sqlstate}); check that it is up and accepts connections"
        )
    if isinstance(cause, socket.gaierror):
        return f"cannot connect to {where}: its host name does not resolve; {check} (its host)"
    if isinstance(cause, OSError):
        return f"cannot connect to {where}: {cause.strerror or cause}; {check} (host and port)"
    return None
