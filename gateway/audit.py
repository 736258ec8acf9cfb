"""The audit log: every change an admin makes, who, when, what, before and after.

Writes happen inside the caller's transaction, so a change and its audit row
commit together or not at all.

The actor is a name: a CLI user (`root@vm`, `cli:root`), a folder, or an admin-API
token's subject, which whoever mints or issues the token chooses. So an admin-API
change also records who called beyond the subject (`via`: its client_id, issuer and
team), and a token whose subject reads like a CLI author is told apart from a CLI
change: an entry with `via` null was not made through the admin API. `via` is kept
in the stored `after` document under VIA_KEY (no column of its own) and read back
out of it, so `after` is what the change left, as before.
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


VIA_KEY = "_via"  # in the stored `after`: the admin-API caller (never a bundle section)


@dataclass(frozen=True, slots=True)
class ApiCaller:
    """Who made an admin-API change, beyond its token's subject."""

    client_id: str | None  # the token's client_id claim (None: the token has none)
    issuer: str  # the token's `iss`: the built-in issuer or an external IdP
    team: str

    def as_json(self) -> dict[str, Any]:
        return {
            "channel": "admin-api",
            "client_id": self.client_id,
            "issuer": self.issuer,
            "team": self.team,
        }


class ApiActor(str):
    """An admin-API token's subject as the actor of a change, carrying the caller
    (`ApiCaller`): `record_audit` keeps it as the entry's `via`. A `str`, so it passes
    through services that take an actor's name unchanged."""

    caller: ApiCaller

    def __new__(cls, subject: str, caller: ApiCaller) -> ApiActor:
        made = super().__new__(cls, subject)
        made.caller = caller
        return made


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
    via: Any = None  # ApiCaller.as_json() of an admin-API change; None for any other

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
            "via": self.via,
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
    """Add one entry in the caller's transaction. Never pass secrets in before/after.

    An `ApiActor` records its caller as the entry's `via`."""
    if isinstance(actor, ApiActor):
        after = {**(after if after is not None else {}), VIA_KEY: actor.caller.as_json()}
    await conn.execute(
        audit_log.insert().values(
            at=at or datetime.now(UTC),
            actor=str(actor),
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
    return [_entry(r) for r in rows]


def _entry(row: sa.Row[Any]) -> AuditEntry:
    after = orjson.loads(row.after) if row.after else None
    via = None
    if isinstance(after, dict) and VIA_KEY in after:
        via = after.pop(VIA_KEY)
        after = after or None  # recorded with no `after` of its own
    return AuditEntry(
        id=row.id,
        at=row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC),
        actor=row.actor,
        action=row.action,
        target=row.target,
        reason=row.reason,
        before=orjson.loads(row.before) if row.before else None,
        after=after,
        via=via,
    )
