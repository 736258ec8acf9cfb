"""The audit log: every change an admin makes, who, when, what, before and after.

Writes happen inside the caller's transaction, so a change and its audit row
commit together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db import metadata

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("before", sa.Text, nullable=True),
    sa.Column("after", sa.Text, nullable=True),
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    reason: str | None
    before: Any
    after: Any

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "reason": self.reason,
            "before": self.before,
            "after": self.after,
        }


def _dump(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


async def record_audit(
    conn: AsyncConnection,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    reason: str | None = None,
    before: Any = None,
    after: Any = None,
    at: datetime | None = None,
) -> None:
    """Add one entry in the caller's transaction. Never pass secrets in before/after."""
    await conn.execute(
        audit_log.insert().values(
            at=at or datetime.now(UTC),
            actor=actor,
            action=action,
            target=target,
            reason=reason,
            before=_dump(before),
            after=_dump(after),
        )
    )


async def read_audit(
    conn: AsyncConnection, *, limit: int = 100, before: int | None = None
) -> list[AuditEntry]:
    """Newest first; with `before`, only entries whose id is below it (the next page)."""
    query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(audit_log.c.id < min(before, 2**63 - 1))
    rows = await conn.execute(query)
    return [
        AuditEntry(
            id=r.id,
            at=r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC),
            actor=r.actor,
            action=r.action,
            target=r.target,
            reason=r.reason,
            before=orjson.loads(r.before) if r.before else None,
            after=orjson.loads(r.after) if r.after else None,
        )
        for r in rows
    ]
