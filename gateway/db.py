"""The database connection: engine construction, serialized writes, migrations.

Owns how the gateway talks to SQLite (default) and PostgreSQL: pool settings,
SQLite pragmas and transaction control, a cross-process lock for writes that
must not race, and `migrate()` (Alembic upgrade to head under that lock).
It defines no tables of its own beyond the shared `metadata`; each concern
declares its tables next to its code and its schema in the top-level `migrations/`
(shipped inside the package as `gateway/migrations/` by the wheel build).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, MetaData, event, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

if TYPE_CHECKING:
    from alembic.config import Config


def _migrations_dir() -> Path:
    """Installed wheel: `gateway/migrations` (force-included); source tree or editable
    install: the repository's top-level `migrations/`."""
    packaged = Path(__file__).with_name("migrations")
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "migrations"


MIGRATIONS_DIR = _migrations_dir()

# Constraint names that are stable across SQLite and PostgreSQL, so a later
# migration can drop or alter a constraint by name on both.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)

SQLITE_BUSY_TIMEOUT_S = 5.0
# PostgreSQL: how long getting a connection may take (opening one: a stopped server
# completes the TCP handshake, then never answers; or the pool's pre-ping of one it holds),
# and any one statement, timed by the client so that it also bounds a server that does
# not answer at all; past either, the database is down (503). The longest statements are
# a monthly report's: it reads one day per statement, 0.2 s at most for a 300,000-row
# month grouped by team, model and subject (the whole report takes up to 54 s, rendering
# mostly); 30 s leaves 150 times that.
PG_CONNECT_TIMEOUT_S = 5.0
PG_STATEMENT_TIMEOUT_S = 30.0
# Migrations may hold the write lock for a while; replicas starting together wait.
MIGRATE_LOCK_TIMEOUT_S = 120.0
_SQLITE_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})
_SQLITE_BEGIN_OPTION = "gateway_sqlite_begin"


def create_engine(
    url: str,
    *,
    sqlite_busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S,
    bound_statements: bool = True,
) -> AsyncEngine:
    """An async engine for `sqlite+aiosqlite://…` or `postgresql+asyncpg://…`.

    SQLite: WAL journal (readers never block the writer), a busy timeout so a
    second writer waits instead of failing, and SQLAlchemy in charge of BEGIN
    (the sqlite3 module's implicit transactions are off) so reads inside a
    transaction are consistent and `locked_transaction` can BEGIN IMMEDIATE.
    PostgreSQL: a small pool with pre-ping and recycling, so a replica survives
    a database restart or an idle-connection reaper; bounded waits (connect, and each
    statement unless not `bound_statements`), so a hung server is an outage.
    """
    parsed = async_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(parsed, connect_args={"timeout": sqlite_busy_timeout_s})
        _configure_sqlite(engine, busy_timeout_ms=int(sqlite_busy_timeout_s * 1000))
        if parsed.database and parsed.database != ":memory:":
            _watch_sqlite_file(engine, SqliteFileWatch(Path(parsed.database)))
        return engine
    engine = create_async_engine(
        parsed,
        pool_size=5,
        max_overflow=10,
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_timeout=30,
        connect_args={
            "async_creator_fn": _connect_answered,
            "server_settings": {"application_name": "llm-gateway"},
            # A hung server (stopped, or a network that drops packets) must not hold a
            # request, the ledger or the shutdown forever: both become outages (503).
            "timeout": PG_CONNECT_TIMEOUT_S,
            "command_timeout": PG_STATEMENT_TIMEOUT_S if bound_statements else None,
        },
    )
    _translate_postgres_outages(engine, connect_timeout_s=PG_CONNECT_TIMEOUT_S)
    return engine


async def _connect_answered(*args: Any, **params: Any) -> Any:
    """asyncpg's connect, then a first query (`SELECT 1`), both within the connect timeout.

    A server that logs the client in but answers no query (stopped mid-way, or a pooler
    whose server is gone) is down now: otherwise SQLAlchemy's set-up queries on a new
    connection (type codecs, the dialect's first look) would each wait the statement
    timeout, or forever on a migration's unbounded connection."""
    import asyncpg  # PostgreSQL only

    async with asyncio.timeout(params["timeout"]):  # connect_args' own, for both
        connection = await asyncpg.connect(*args, **params)
        try:
            await connection.execute("SELECT 1")
        except BaseException:
            connection.terminate()
            raise
    return connection


def _translate_postgres_outages(engine: AsyncEngine, *, connect_timeout_s: float) -> None:
    """asyncpg raises the socket's own OSError (refused, unreachable, its connect timeout)
    and a bare TimeoutError (command_timeout), which SQLAlchemy passes on unwrapped: as
    OperationalError they are outages like any other (503 `database_unavailable`), and a
    connection whose statement or pre-ping timed out is discarded, never reused."""
    dialect = engine.sync_engine.dialect

    def as_outage(error: OSError, what: str) -> Exception:
        reason = str(error) or "no answer within the timeout"
        return dialect.loaded_dbapi.OperationalError(
            f"{what}: {type(error).__name__}: {reason}", error
        )

    outage_class = dialect.loaded_dbapi.OperationalError

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except OSError as error:  # TimeoutError included
            raise as_outage(error, "cannot connect") from error
        except dialect.loaded_dbapi.Error as error:
            # The server refused the session (starting up or shutting down in a failover,
            # not accepting connections, too many, a password changed): no statement ran,
            # so no bug in ours; an outage (probe p10: a trace logged per request, and the
            # token endpoint's answer not in OAuth's shape).
            if isinstance(error, outage_class):
                raise
            raise outage_class(f"cannot connect: {error}", error) from error

    # The pool's pre-ping has no event; outside a statement, so handle_error misses it.
    ping = dialect.do_ping

    def _ping(dbapi_connection: Any) -> bool:
        # Part of getting a connection, so bounded like opening one, not like a statement:
        # a hung server fails a request within the connect timeout, pooled or new.
        try:
            await_only(
                dbapi_connection.driver_connection.execute("SELECT 1", timeout=connect_timeout_s)
            )
        except OSError as error:  # TimeoutError included
            raise as_outage(error, "pre-ping failed") from error
        except Exception:
            # Closed, or ended by the server (a restart): the dialect's own ping raises it
            # as its DBAPI error, from which the pool decides to reconnect.
            return bool(ping(dbapi_connection))
        return True

    setattr(dialect, "do_ping", _ping)  # noqa: B010 - an instance's method; mypy refuses `=`
    # Closing a pooled connection (`dispose`, at shutdown) waits for the server's goodbye
    # up to the statement timeout, one connection after another, after a ROLLBACK that
    # waits as long: terminate instead (a graceful close within 2 s, else the socket is
    # dropped; the server rolls back what a dropped session left open).
    setattr(dialect, "do_close", dialect.do_terminate)  # noqa: B010

    @event.listens_for(engine.sync_engine, "handle_error")
    def _statement_failed(context: ExceptionContext) -> BaseException | None:
        error = context.original_exception
        if is_server_outage(error) and not isinstance(error, outage_class):
            # A server going away under a session (shut down, restarted, failed over).
            context.is_disconnect = True
            return OperationalError(context.statement, context.parameters, error)
        if context.sqlalchemy_exception is not None or not isinstance(error, OSError):
            return None
        context.is_disconnect = True  # half-answered: the pool must not hand it out again
        return OperationalError(
            context.statement, context.parameters, as_outage(error, "statement failed")
        )


# SQLSTATE classes that say the server cannot serve now, not that a statement is wrong:
# 08 connection exception, 53 insufficient resources, 57 operator intervention (admin
# shutdown, crash shutdown, "the database system is starting up").
OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "53", "57"})


def is_server_outage(error: BaseException) -> bool:
    """Is `error` (the driver's, as SQLAlchemy's asyncpg adapter raises it) a server
    that cannot serve now?"""
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in OUTAGE_SQLSTATE_CLASSES


def async_url(url: str) -> URL:
    """The URL with the async driver the gateway uses, accepting the usual spellings:
    `postgres://` and `postgresql://` mean asyncpg (and libpq's `sslmode` becomes
    asyncpg's `ssl`); `sqlite://` means aiosqlite."""
    parsed = make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgres", "postgresql") and not driver:
        parsed = parsed.set(drivername="postgresql+asyncpg")
        if "sslmode" in parsed.query:
            query = dict(parsed.query)
            query["ssl"] = query.pop("sslmode")
            parsed = parsed.set(query=query)
    elif backend == "sqlite" and driver != "aiosqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed


def _configure_sqlite(engine: AsyncEngine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see `_on_begin`).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL needs a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
            _switch_to_wal(cursor, timeout_s=busy_timeout_ms / 1000)
            # WAL + NORMAL cannot corrupt the file; a power cut may lose the last commits.
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_SQLITE_BEGIN_OPTION, "DEFERRED")
        if mode not in _SQLITE_BEGIN_MODES:
            raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
        conn.exec_driver_sql(f"BEGIN {mode}")


class DatabaseFileChanged(OperationalError):
    """The SQLite file was deleted or replaced while the gateway had it open.

    Open connections still write into the old, unlinked file: every commit would
    be acknowledged and then lost. An `OperationalError`, so every edge renders
    it as 503 `database_unavailable` like any other outage.
    """

    def __init__(self, reason: str) -> None:
        super().__init__("BEGIN", None, sqlite3.OperationalError(reason))
        self.reason = reason


class SqliteFileWatch:
    """The identity (device, inode) of a SQLite file, taken at the first connection.

    `problem()` is one `stat()` (~1 µs): cheap enough to run before every
    transaction. Once the file is gone or replaced it stays a problem until
    restart: the pooled connections hold the old file, and what the new one holds
    is for the operator to decide.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._identity: tuple[int, int] | None = None
        self._problem: str | None = None

    def remember(self) -> None:
        if self._identity is None:
            with_identity = _identity(self.path)
            if with_identity is not None:
                self._identity = with_identity

    def problem(self) -> str | None:
        """Why this file is no longer the database the gateway opened, or None."""
        if self._problem is not None or self._identity is None:
            return self._problem
        now = _identity(self.path)
        if now is None:
            self._problem = f"the database file {self.path} was deleted while serving; restart"
        elif now != self._identity:
            self._problem = f"the database file {self.path} was replaced while serving; restart"
        return self._problem


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _watch_sqlite_file(engine: AsyncEngine, watch: SqliteFileWatch) -> None:
    @event.listens_for(engine.sync_engine, "do_connect")
    def _before_connect(_dialect: Any, _record: Any, _cargs: Any, _cparams: Any) -> None:
        # Look before sqlite opens the path: opening a deleted file creates a new empty
        # one, which would then read as "replaced" (the problem, once seen, is kept).
        watch.problem()

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(_dbapi_connection: Any, _record: Any) -> None:
        watch.remember()  # after sqlite has created the file, if it was new

    # Before every transaction, reads included: a write must never be acknowledged
    # into a file nobody will open again, and a read of it is stale.
    @event.listens_for(engine.sync_engine, "begin", insert=True)  # before BEGIN is sent
    def _check_file(_conn: Connection) -> None:
        reason = watch.problem()
        if reason is not None:
            raise DatabaseFileChanged(reason)


def _switch_to_wal(cursor: Any, *, timeout_s: float) -> None:
    """Put the database file in WAL mode (a persistent property of the file).

    The switch needs an exclusive lock, and SQLite reports "database is locked"
    at once, without waiting on the busy timeout, while another connection is
    switching the same fresh file: so retry briefly. Once the file is in WAL,
    asking again is a read and never contends.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)  # only ever on a brand-new file, while replicas start together


def _advisory_key(name: str) -> int:
    """A stable signed 64-bit key for `pg_advisory_*lock` derived from a lock name."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


@asynccontextmanager
async def locked_transaction(engine: AsyncEngine, name: str) -> AsyncIterator[AsyncConnection]:
    """A transaction that no other process holding the same lock runs concurrently.

    PostgreSQL: `pg_advisory_xact_lock` on a key derived from `name`, released at
    commit or rollback. SQLite: `BEGIN IMMEDIATE` takes the database's single
    write lock (so `name` does not matter); a writer still holding it after the
    busy timeout makes this raise `OperationalError` ("database is locked").
    Commits on normal exit, rolls back on an exception.
    """
    if engine.dialect.name == "sqlite":
        async with engine.execution_options(**{_SQLITE_BEGIN_OPTION: "IMMEDIATE"}).begin() as conn:
            yield conn
        return
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _advisory_key(name)})
        yield conn


def alembic_config(url: str) -> Config:
    """Alembic configuration built in code: no alembic.ini, works from an installed wheel."""
    from alembic.config import Config  # only migrations need alembic; keep it off startup

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    # ConfigParser interpolates '%': a password such as 'p%40ss' must be escaped.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _current_revision(sync_conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(sync_conn).get_current_revision()


def _upgrade_to_head(sync_conn: Connection, config: Config) -> None:
    from alembic import command

    config.attributes["connection"] = sync_conn
    command.upgrade(config, "head")


@dataclass(frozen=True, slots=True)
class Migrated:
    """What `migrate` did: the schema revision before and after (None: no schema)."""

    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


async def migrate(url: str) -> Migrated:
    """Bring the database at `url` to the newest Alembic revision; a no-op when current.

    Replicas that start together serialize on a lock: the first upgrades, the
    others wait, then find the schema at head and do nothing.
    PostgreSQL holds a session-level `pg_advisory_lock` around Alembic's own
    transaction; SQLite runs the whole upgrade inside one `BEGIN IMMEDIATE`.
    Alembic keeps process-global state (its `context` proxy): the lock serializes
    calls for one database, but one process must not migrate two databases at once.
    """
    config = alembic_config(url)
    # No statement timeout: a migration of a big ledger, or waiting for another replica's.
    engine = create_engine(
        url, sqlite_busy_timeout_s=MIGRATE_LOCK_TIMEOUT_S, bound_statements=False
    )
    try:
        if engine.dialect.name == "sqlite":
            async with locked_transaction(engine, "migrate") as conn:
                before = await conn.run_sync(_current_revision)
                await conn.run_sync(_upgrade_to_head, config)
                return Migrated(before, await conn.run_sync(_current_revision))
        key = _advisory_key("gateway:migrate")
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            await conn.commit()  # leave no transaction open: Alembic begins its own
            try:
                before = await conn.run_sync(_current_revision)
                await conn.rollback()
                await conn.run_sync(_upgrade_to_head, config)
                await conn.rollback()
                return Migrated(before, await conn.run_sync(_current_revision))
            finally:
                await conn.rollback()
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                await conn.commit()
    finally:
        await engine.dispose()


class SchemaNotCurrent(Exception):
    """The database's schema is not the one this code needs; the message says what to do."""


class SchemaFromNewerGateway(SchemaNotCurrent):
    """The database is at a revision this code does not know: a newer gateway migrated it."""


async def check_schema(url: str) -> None:
    """Raise SchemaNotCurrent unless the database at `url` is at this code's head revision."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    script = ScriptDirectory.from_config(alembic_config(url))
    head = script.get_current_head()
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()
    if current == head:
        return
    if current is None:
        raise SchemaNotCurrent("the database has no schema yet: run `gateway migrate`")
    try:
        script.get_revision(current)
    except CommandError:
        raise SchemaFromNewerGateway(
            f"the database is at schema revision {current}, which this gateway does not know: "
            "a newer gateway has migrated it; run that version (or restore a backup)"
        ) from None
    raise SchemaNotCurrent(
        f"the database is at schema revision {current}, this gateway needs {head}: "
        "run `gateway migrate`"
    )
