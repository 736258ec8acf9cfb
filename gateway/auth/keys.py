"""The built-in issuer's signing keys: stored in `signing_keys`, cached in memory.

Owns key generation, the current signing key, the public key set used to
verify our own tokens, and rotation. A rotated-out key is marked retired: it
no longer signs but keeps verifying until the tokens minted before rotation
have expired, then stops: its cut-off is `retired_at` as stored (the rotation
time, wherever `keys rotate` ran) plus `retired_verify_s`, never the time this
process noticed. A serving process reloads the key set in the background every
`refresh_interval_s` (`start()`/`stop()`), as revoked clients are, so a rotation
run by the CLI or another replica reaches it within that: no query per request.
Private keys never appear in reprs or logs.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.auth.periodic import PeriodicReload
from gateway.db import locked_transaction, metadata

ALGORITHM = "RS256"
RSA_BITS = 2048
REFRESH_INTERVAL_S = 1.0
CURRENT_KEY_TTL_S = 60.0
# How long a retired key keeps verifying: the default token lifetime plus slack.
# Services pass the real figure (token TTL + key poll + leeway, see issuer.py).
RETIRED_VERIFY_S = 3600.0 + 60.0

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.Text, primary_key=True),
    sa.Column("algorithm", sa.Text, nullable=False),
    sa.Column("private_jwk", sa.Text, nullable=False),
    sa.Column("public_jwk", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One signing key; its repr shows the kid and dates, never key material."""

    kid: str
    algorithm: str
    private_key: RSAKey = field(repr=False)
    created_at: datetime
    retired_at: datetime | None = None

    @property
    def is_retired(self) -> bool:
        return self.retired_at is not None

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK (with kid, alg, use), as published in the JWKS."""
        return self.private_key.as_dict(private=False)


def new_signing_key(now: datetime) -> SigningKey:
    """Generate an RS256 key with a kid like `k-20261125-3f9a1c0e`. CPU only (~50 ms)."""
    kid = f"k-{now:%Y%m%d}-{secrets.token_hex(4)}"
    private = RSAKey.generate_key(
        RSA_BITS, parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"}, private=True
    )
    return SigningKey(kid=kid, algorithm=ALGORITHM, private_key=private, created_at=now)


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _from_row(row: sa.Row[Any]) -> SigningKey:
    return SigningKey(
        kid=row.kid,
        algorithm=row.algorithm,
        private_key=RSAKey.import_key(json.loads(row.private_jwk)),
        created_at=_utc(row.created_at),
        retired_at=_utc(row.retired_at) if row.retired_at is not None else None,
    )


_NEWEST_ACTIVE = (
    sa.select(signing_keys)
    .where(signing_keys.c.retired_at.is_(None))
    .order_by(signing_keys.c.created_at.desc(), signing_keys.c.kid.desc())
    .limit(1)
)


class SigningKeyStore:
    """Signing keys over the database, cached per process.

    `current()` returns the newest non-retired key, creating the first one on
    demand (serialized across processes, so two replicas starting on an empty
    database agree on one key). `verification_keys()` is the cached public key
    set; `refresh_if_unknown(kid)` reloads it at most once per `refresh_interval_s`,
    so a flood of tokens with made-up kids costs one query per interval.
    `retires_at(kid)` answers from memory when a key stops verifying; `start()`
    keeps the set and those cut-offs fresh in a background task until `stop()`.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        refresh_interval_s: float = REFRESH_INTERVAL_S,
        current_ttl_s: float = CURRENT_KEY_TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
        utcnow: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_key: Callable[[datetime], SigningKey] = new_signing_key,
        retired_verify_s: float = RETIRED_VERIFY_S,
    ) -> None:
        self._engine = engine
        self._retired_verify = timedelta(seconds=retired_verify_s)
        self._refresh_interval_s = refresh_interval_s
        self._current_ttl_s = current_ttl_s
        self._monotonic = monotonic
        self._utcnow = utcnow
        self._new_key = new_key
        self._current: SigningKey | None = None
        self._current_loaded_at = 0.0
        self._public: KeySet | None = None
        self._public_kids: frozenset[str] = frozenset()
        self._public_loaded_at = float("-inf")  # never loaded: the first refresh may run
        self._public_expires_at: datetime | None = None  # when a retired key in it stops
        # Unix second each retired kid was retired at, past cut-offs included.
        self._retired_at: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self._refresher = PeriodicReload(
            self._reload_public_locked, interval_s=refresh_interval_s, what="signing keys"
        )

    async def current(self) -> SigningKey:
        """The key to sign with now; creates one if the database holds none."""
        now = self._monotonic()
        if self._current is not None and now - self._current_loaded_at < self._current_ttl_s:
            return self._current
        async with self._engine.connect() as conn:
            row = (await conn.execute(_NEWEST_ACTIVE)).first()
        key = _from_row(row) if row is not None else await self._create_first()
        self._current, self._current_loaded_at = key, now
        if key.kid not in self._public_kids:
            await self._reload_public()
        return key

    async def _create_first(self) -> SigningKey:
        candidate = await asyncio.to_thread(self._new_key, self._utcnow())
        async with locked_transaction(self._engine, "signing_keys") as conn:
            # Another process may have created one while we waited for the lock.
            row = (await conn.execute(_NEWEST_ACTIVE)).first()
            if row is not None:
                return _from_row(row)
            await _insert(conn, candidate)
        return candidate

    async def rotate(self) -> SigningKey:
        """Create a new current key and retire the others (they keep verifying)."""
        key = await asyncio.to_thread(self._new_key, self._utcnow())
        async with locked_transaction(self._engine, "signing_keys") as conn:
            await conn.execute(
                sa.update(signing_keys)
                .where(signing_keys.c.retired_at.is_(None))
                .values(retired_at=key.created_at)
            )
            await _insert(conn, key)
        self._current, self._current_loaded_at = key, self._monotonic()
        await self._reload_public()
        return key

    async def list_keys(self) -> list[SigningKey]:
        """Every stored key, newest first."""
        query = sa.select(signing_keys).order_by(
            signing_keys.c.created_at.desc(), signing_keys.c.kid.desc()
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_from_row(row) for row in rows]

    def still_verifies(self, key: SigningKey, now: datetime) -> bool:
        """Current keys verify; a retired one only while its last tokens can be alive."""
        return key.retired_at is None or key.retired_at + self._retired_verify > now

    def retires_at(self, kid: str) -> float | None:
        """Unix second from which `kid` never verifies; None while it is a current key.

        From memory, as of the last load; a kid this store has not loaded (or that is
        gone from the database) is treated as retired long ago."""
        retired_at = self._retired_at.get(kid)
        if retired_at is not None:
            return retired_at + self._retired_verify.total_seconds()
        return None if kid in self._public_kids else float("-inf")

    def signs_until(self, kid: str) -> float | None:
        """Unix second after which no process signed with `kid`; None while it is current
        (from memory, as of the last load, as `retires_at`): its retirement, plus the time a
        process keeps signing with the key it loaded (`current_ttl_s`)."""
        retired_at = self._retired_at.get(kid)
        return None if retired_at is None else retired_at + self._current_ttl_s

    async def start(self) -> None:
        """Load the key set, then reload it in the background every `refresh_interval_s`."""
        await self._refresher.start()

    async def stop(self) -> None:
        await self._refresher.stop()

    async def _reload_public_locked(self) -> None:
        # The cut-offs already loaded keep applying while reloads fail: the verifier checks them.
        async with self._lock:
            await self._reload_public()

    async def verification_keys(self) -> KeySet:
        """Public keys of the keys that still verify (cached; reloaded when one stops)."""
        expires = self._public_expires_at
        if self._public is None or (expires is not None and self._utcnow() >= expires):
            await self._reload_public()
        assert self._public is not None
        return self._public

    async def refresh_if_unknown(self, kid: str) -> bool:
        """Reload the key set if `kid` is unknown and the last load is old enough.

        Returns whether `kid` is known afterwards. Concurrent callers share one reload.
        """
        if kid in self._public_kids:
            return True
        async with self._lock:
            if kid in self._public_kids:
                return True
            if self._monotonic() - self._public_loaded_at < self._refresh_interval_s:
                return False
            await self._reload_public()
        return kid in self._public_kids

    async def _reload_public(self) -> None:
        # A leaked key is why keys rotate: once its tokens are expired, it is dropped.
        # Public halves only: a reload may run once a second under a flood of made-up kids.
        columns = (signing_keys.c.kid, signing_keys.c.public_jwk, signing_keys.c.retired_at)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(*columns))).all()
        now = self._utcnow()
        retired = {row.kid: _utc(row.retired_at) for row in rows if row.retired_at}
        ends = {kid: at + self._retired_verify for kid, at in retired.items()}
        live = [row for row in rows if row.kid not in ends or ends[row.kid] > now]
        keys = [RSAKey.import_key(json.loads(row.public_jwk)) for row in live]
        self._public = KeySet(keys)  # type: ignore[arg-type]  # KeySet is typed over the Key union
        self._public_kids = frozenset(row.kid for row in live)
        self._retired_at = {kid: at.timestamp() for kid, at in retired.items()}
        self._public_loaded_at = self._monotonic()
        self._public_expires_at = min((ends[r.kid] for r in live if r.kid in ends), default=None)


async def _insert(conn: AsyncConnection, key: SigningKey) -> None:
    await conn.execute(
        sa.insert(signing_keys).values(
            kid=key.kid,
            algorithm=key.algorithm,
            private_jwk=json.dumps(key.private_key.as_dict(private=True)),
            public_jwk=json.dumps(key.public_jwk()),
            created_at=key.created_at,
            retired_at=None,
        )
    )
