"""The long-lived parts of a running gateway, built once in the lifespan and passed on.

Nothing here is a module global: tests build their own `Services`.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.keys import SigningKeyStore
from gateway.auth.tokens import TokenVerifier
from gateway.db import create_engine, migrate
from gateway.logs import AccessLog
from gateway.policy.store import PolicyStore, load_policy_dir
from gateway.providers.registry import ProviderSet
from gateway.routing.failover import HealthBoard
from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    policy: PolicyStore
    providers: ProviderSet
    health: HealthBoard
    keys: SigningKeyStore
    verifier: TokenVerifier
    engine: AsyncEngine
    started_at: int
    access_log: AccessLog


@asynccontextmanager
async def build_services(settings: Settings) -> AsyncIterator[Services]:
    """Load the policy, open the database and providers; close them all on exit.

    Raises PolicyInvalid before anything is opened when the bundle is bad.
    """
    policy = load_policy_dir(settings.policy_dir, os.environ)
    if settings.migrate_on_start:
        await migrate(settings.database_url)
    engine = create_engine(settings.database_url)
    providers = ProviderSet(policy.providers)
    access_log = AccessLog(settings.access_log)
    try:
        keys = SigningKeyStore(engine)
        await keys.current()  # the first start creates the signing key
        verifier = TokenVerifier(settings.issuer_url, settings.audience, keys)
        yield Services(
            settings=settings,
            policy=PolicyStore(policy),
            providers=providers,
            health=HealthBoard(),
            keys=keys,
            verifier=verifier,
            engine=engine,
            started_at=int(time.time()),
            access_log=access_log,
        )
    finally:
        access_log.close()
        await providers.close()
        await engine.dispose()
