"""Policy versions in the database: 1, 2, 3…, each with author, time, reason, bundle, hash.

Owns the `policy_versions` table and plain reads and writes over a connection
the caller holds. It decides nothing: who may write, when a bundle is stale
and which version runs are `service.py`'s. The bundle is stored as written
(`${VAR}` references unresolved) as JSON; the newest version is the running one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db import metadata

# Version numbers a lookup may send to the database: the column is an SQL INTEGER,
# 32-bit in PostgreSQL, and SQLite's drivers overflow past 64 bits. A number
# outside this range names no version, so it is answered without a query.
MAX_VERSION = 2**31 - 1

policy_versions = sa.Table(
    "policy_versions",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("parent", sa.Integer, nullable=True),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("bundle", sa.Text, nullable=False),
    sa.Column("hash", sa.Text, nullable=False),
    # JSON {identity: era} (policy/budget_eras.py); NULL for versions made before it
    sa.Column("budget_eras", sa.Text, nullable=True),
)


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    version: int
    parent: int | None  # the version that was running when this one was made
    author: str
    created_at: datetime  # UTC
    reason: str
    bundle: dict[str, Any]  # as written: `${VAR}` references kept, never resolved
    hash: str  # sha256 of the bundle's canonical JSON (`compiled.bundle_hash`)
    # budgets back in force since a version: their counters start anew (budget_eras.py)
    budget_eras: Mapping[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The version without its bundle, as history lists it."""
        return {
            "version": self.version,
            "parent": self.parent,
            "author": self.author,
            "created_at": self.created_at.isoformat(),
            "reason": self.reason,
            "hash": self.hash,
        }

    def as_json(self) -> dict[str, Any]:
        return {**self.summary(), "bundle": self.bundle}


def _from_row(row: sa.Row[Any]) -> PolicyVersion:
    created = row.created_at
    return PolicyVersion(
        version=row.version,
        parent=row.parent,
        author=row.author,
        # SQLite hands back naive datetimes; every stored time is UTC.
        created_at=created if created.tzinfo else created.replace(tzinfo=UTC),
        reason=row.reason,
        bundle=orjson.loads(row.bundle),
        hash=row.hash,
        budget_eras=orjson.loads(row.budget_eras) if row.budget_eras else {},
    )


async def newest_version_number(conn: AsyncConnection) -> int | None:
    """The running version's number; one index lookup, cheap enough to poll."""
    value = await conn.scalar(sa.select(sa.func.max(policy_versions.c.version)))
    return int(value) if value is not None else None


async def read_version(conn: AsyncConnection, version: int) -> PolicyVersion | None:
    """The version numbered `version`, or None (also for any number no version can have)."""
    if not 1 <= version <= MAX_VERSION:
        return None
    row = (
        await conn.execute(sa.select(policy_versions).where(policy_versions.c.version == version))
    ).first()
    return _from_row(row) if row is not None else None


async def read_newest(conn: AsyncConnection) -> PolicyVersion | None:
    row = (
        await conn.execute(
            sa.select(policy_versions).order_by(policy_versions.c.version.desc()).limit(1)
        )
    ).first()
    return _from_row(row) if row is not None else None


async def read_history(
    conn: AsyncConnection, *, limit: int = 100, before: int | None = None
) -> list[PolicyVersion]:
    """Newest first; with `before`, only versions numbered below it (the next page).

    Numbers past what the columns hold are clamped, never sent: a `limit` beyond
    MAX_VERSION already means every version (`policy history --limit`).
    """
    query = (
        sa.select(policy_versions)
        .order_by(policy_versions.c.version.desc())
        .limit(min(limit, MAX_VERSION))
    )
    if before is not None:
        query = query.where(policy_versions.c.version < min(max(before, 1), MAX_VERSION + 1))
    return [_from_row(row) for row in await conn.execute(query)]


async def insert_version(conn: AsyncConnection, version: PolicyVersion) -> None:
    """Add a version in the caller's transaction; a duplicate number violates the key."""
    await conn.execute(
        policy_versions.insert().values(
            version=version.version,
            parent=version.parent,
            author=version.author,
            created_at=version.created_at,
            reason=version.reason,
            bundle=orjson.dumps(version.bundle).decode(),
            hash=version.hash,
            budget_eras=orjson.dumps(dict(version.budget_eras)).decode(),
        )
    )
