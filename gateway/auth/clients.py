"""OAuth clients of the built-in issuer: registration, secrets, revocation.

Owns the `oauth_clients` table and the client service shared by the CLI and the
admin API (`ClientRegistry`): create (the secret is returned once and stored
only as a scrypt hash, see `client_secrets.py`), list, revoke, authenticate,
and the per-process set of revoked client ids that the request path consults
without I/O. Every create and revoke writes its audit entry in the same
transaction; no secret or hash ever reaches the audit log, a repr or a log
line. The token protocol itself lives in `gateway/auth/issuer.py`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit import record_audit
from gateway.auth.client_secrets import hash_secret, verify_secret
from gateway.auth.login_guard import LoginGuard, LoginLimits, VerifiedSecrets
from gateway.auth.periodic import PeriodicReload
from gateway.auth.principal import SCOPE_ADMIN, SCOPE_FINANCE, SCOPE_INVOKE
from gateway.db import metadata

KNOWN_SCOPES = frozenset({SCOPE_INVOKE, SCOPE_ADMIN, SCOPE_FINANCE})
DEFAULT_SCOPES = (SCOPE_INVOKE,)
REVOKED_REFRESH_S = 1.0  # with the verifier's cache, revocation holds everywhere within 2 s
MAX_LABEL_CHARS = 200

oauth_clients = sa.Table(
    "oauth_clients",
    metadata,
    sa.Column("client_id", sa.Text, primary_key=True),
    sa.Column("secret_hash", sa.Text, nullable=False),
    sa.Column("team", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)


# --- records ---


class UnknownClient(LookupError):
    """No client with this id."""


class InvalidClientSpec(ValueError):
    """A create request the registry refuses; `param` names the field."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A registered client as shown to admins: never its secret or hash."""

    client_id: str
    team: str
    name: str | None
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "team": self.team,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True, slots=True)
class StoredClient:
    """A record with its secret hash, for the token endpoint only."""

    record: ClientRecord
    secret_hash: str = field(repr=False)
    verified: VerifiedSecrets | None = field(default=None, repr=False, compare=False)

    def check_secret(self, secret: str) -> bool:
        """Slow (scrypt) unless the pair verified within the last minute: call it in a
        thread. A revoked client never authenticates (the record is read fresh)."""
        if self.record.is_revoked:
            verify_secret(secret, None)  # same cost as a real check
            return False
        client_id = self.record.client_id
        if self.verified is not None and self.verified.has(client_id, secret):
            return True
        is_valid = verify_secret(secret, self.secret_hash)
        if is_valid and self.verified is not None:
            self.verified.remember(client_id, secret)
        return is_valid


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _record(row: sa.Row[Any]) -> ClientRecord:
    return ClientRecord(
        client_id=row.client_id,
        team=row.team,
        name=row.name,
        scopes=tuple(row.scopes.split()),
        created_at=_utc(row.created_at),
        revoked_at=_utc(row.revoked_at) if row.revoked_at is not None else None,
    )


def _checked(team: str, name: str | None, scopes: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    team = team.strip()
    if not team or len(team) > MAX_LABEL_CHARS or any(c.isspace() for c in team):
        raise InvalidClientSpec("'team' must be a non-empty name without spaces.", param="team")
    if name is not None and len(name) > MAX_LABEL_CHARS:
        raise InvalidClientSpec(
            f"'name' is longer than {MAX_LABEL_CHARS} characters.", param="name"
        )
    return team, checked_scopes(scopes)


def checked_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """`scopes` sorted and deduplicated (DEFAULT_SCOPES if none); InvalidClientSpec naming
    the first one the gateway does not know. `clients create` and `gateway token` share it."""
    wanted = tuple(sorted(set(scopes))) or DEFAULT_SCOPES
    unknown = [s for s in wanted if s not in KNOWN_SCOPES]
    if unknown:
        raise InvalidClientSpec(
            f"Unknown scope {unknown[0]!r}; known scopes: {', '.join(sorted(KNOWN_SCOPES))}.",
            param="scopes",
        )
    return wanted


class ClientRegistry:
    """The client service over the database; CLI and admin API both call it.

    `start()` loads the revoked ids and keeps them fresh (every
    `refresh_interval_s`) in a background task until `stop()`, so that
    `is_revoked` answers from memory on the request path.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        refresh_interval_s: float = REVOKED_REFRESH_S,
        login_limits: LoginLimits | None = None,
    ):
        self._engine = engine
        # The token endpoint's guard lives here, next to revocation, which must clear it.
        self.login_guard = LoginGuard(login_limits or LoginLimits())
        self._revoked: frozenset[str] = frozenset()
        self._refresher = PeriodicReload(
            self.refresh_revoked, interval_s=refresh_interval_s, what="revoked OAuth clients"
        )

    async def create(
        self, team: str, name: str | None, scopes: Iterable[str], actor: str
    ) -> tuple[ClientRecord, str]:
        """Register a client; returns it with its secret, which is never retrievable again."""
        team, wanted = _checked(team, name, scopes)
        secret = secrets.token_urlsafe(32)
        secret_hash = await asyncio.to_thread(hash_secret, secret)
        record = ClientRecord(
            client_id=f"c-{secrets.token_hex(8)}",
            team=team,
            name=name,
            scopes=wanted,
            created_at=datetime.now(UTC),
        )
        async with self._engine.begin() as conn:
            await conn.execute(
                oauth_clients.insert().values(
                    client_id=record.client_id,
                    secret_hash=secret_hash,
                    team=record.team,
                    name=record.name,
                    scopes=" ".join(record.scopes),
                    created_at=record.created_at,
                )
            )
            await record_audit(
                conn,
                actor=actor,
                action="client.create",
                target=record.client_id,
                after=record.as_json(),
                at=record.created_at,
            )
        return record, secret

    async def list(self) -> list[ClientRecord]:
        """Every client, revoked ones included, newest first."""
        query = sa.select(oauth_clients).order_by(
            oauth_clients.c.created_at.desc(), oauth_clients.c.client_id
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_record(row) for row in rows]

    async def find(self, client_id: str) -> StoredClient | None:
        """The client and its hash, for authentication; None when unknown."""
        query = sa.select(oauth_clients).where(oauth_clients.c.client_id == client_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return StoredClient(_record(row), row.secret_hash, self.login_guard.verified)

    async def revoke(self, client_id: str, actor: str) -> ClientRecord:
        """Revoke a client (idempotent); its tokens stop working within 2 s everywhere.

        Raises `UnknownClient`. Revoking a revoked client changes and audits nothing.
        """
        now = datetime.now(UTC)
        by_id = oauth_clients.c.client_id == client_id
        async with self._engine.begin() as conn:
            row = (await conn.execute(sa.select(oauth_clients).where(by_id))).first()
            if row is None:
                raise UnknownClient(client_id)
            before = _record(row)
            if before.is_revoked:
                return before
            updated = await conn.execute(
                oauth_clients.update()
                .where(by_id, oauth_clients.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            if updated.rowcount == 0:  # revoked concurrently; that one audited it
                return before
            after = ClientRecord(
                before.client_id, before.team, before.name, before.scopes, before.created_at, now
            )
            await record_audit(
                conn,
                actor=actor,
                action="client.revoke",
                target=client_id,
                before=before.as_json(),
                after=after.as_json(),
                at=now,
            )
        self._revoked = self._revoked | {client_id}
        self.login_guard.verified.forget_client(client_id)
        return after

    async def authenticate(self, client_id: str, secret: str) -> ClientRecord | None:
        """The active client these credentials prove, or None (unknown, revoked, wrong)."""
        stored = await self.find(client_id)
        if stored is None:
            await asyncio.to_thread(verify_secret, secret, None)
            return None
        is_valid = await asyncio.to_thread(stored.check_secret, secret)
        return stored.record if is_valid else None

    # --- revocation, as seen by the request path ---

    def is_revoked(self, client_id: str) -> bool:
        """From memory: at most `refresh_interval_s` behind the database."""
        return client_id in self._revoked

    async def refresh_revoked(self) -> None:
        query = sa.select(oauth_clients.c.client_id).where(oauth_clients.c.revoked_at.is_not(None))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        self._revoked = frozenset(row.client_id for row in rows)

    async def start(self) -> None:
        """Load the revoked ids, then keep refreshing them in the background."""
        await self._refresher.start()

    async def stop(self) -> None:
        await self._refresher.stop()
