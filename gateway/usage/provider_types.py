"""What type (openai, azure, mock…) each provider key on the ledger is, for the FOCUS
export's vendor columns (focus.py). Read only; no decisions.

The ledger stores a provider's key (`openai-main`), not its type, and a key may have
left the policy since. Its type is the one the newest policy version that defines it
gives, so a report reads the versions newest first, a few at a time, and stops once
every key asked for is found. Read in the report's own transaction, so the CLI and the
finance API (and two replicas) give the same bytes for the same snapshot. A key no
version defines (a row written past the gateway) has no type.
"""

from __future__ import annotations

from collections.abc import Collection

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.policy.versions import policy_versions

VERSIONS_PER_READ = 8  # bundles can be megabytes: read a few at a time, newest first


async def provider_types(conn: AsyncConnection, keys: Collection[str]) -> dict[str, str]:
    """{provider key: type} for the `keys` some policy version defines."""
    wanted = set(keys)
    found: dict[str, str] = {}
    before: int | None = None
    while wanted:
        query = sa.select(policy_versions.c.version, policy_versions.c.bundle).order_by(
            policy_versions.c.version.desc()
        )
        if before is not None:
            query = query.where(policy_versions.c.version < before)
        rows = (await conn.execute(query.limit(VERSIONS_PER_READ))).all()
        if not rows:
            break
        for row in rows:
            providers = orjson.loads(row.bundle).get("providers") or {}
            for key in list(wanted):
                spec = providers.get(key) if isinstance(providers, dict) else None
                kind = spec.get("type") if isinstance(spec, dict) else None
                if isinstance(kind, str):
                    found[key] = kind
                    wanted.discard(key)
        before = rows[-1].version
    return found
