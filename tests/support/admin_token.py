"""An admin token for a gateway a test built by hand (`build_app` on its own Settings)."""

from __future__ import annotations

import time

from gateway.auth.access_tokens import mint_with_current_key
from gateway.settings import Settings


async def admin_token(settings: Settings) -> str:
    """A 10-minute `gateway:admin` token signed with the database's current key."""
    return await mint_with_current_key(
        settings.database_url,
        issuer=settings.issuer_url,
        audience=settings.audience,
        team="ops",
        subject="tester",
        client_id="tests",
        scopes=("gateway:admin",),
        ttl_s=600,
        now=time.time(),
    )
