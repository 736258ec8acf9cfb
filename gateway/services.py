"""The long-lived parts of a running gateway, built once in the lifespan and passed on.

Nothing here is a module global: tests build their own `Services`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.access_tokens import TokenVerifier
from gateway.auth.authenticator import Authenticator
from gateway.auth.clients import ClientRegistry
from gateway.auth.issuer import CURRENT_KEY_POLL_S, TokenIssuer, retired_key_verify_s
from gateway.auth.jwks import JwksCache
from gateway.auth.keys import SigningKeyStore
from gateway.auth.login_guard import LoginLimits
from gateway.auth.response_id_key import load_response_id_key  # response id binding
from gateway.cache.backends import open_cache  # response cache (issue 14)
from gateway.cache.entry import CacheBackend  # response cache (issue 14)
from gateway.causes import url_place
from gateway.context import RequestContext
from gateway.db import create_engine, migrate
from gateway.guardrails.classifier import Classifiers
from gateway.inflight import InFlight
from gateway.limits.setup import Limits, open_limits
from gateway.logs import AccessLog
from gateway.policy.service import PolicyService
from gateway.policy.store import PolicyStore
from gateway.policy.sync import keep_policy_in_sync, load_running_policy
from gateway.policy.upstreams import UpstreamRules
from gateway.providers.registry import ProviderSet, load_translation
from gateway.routing.affinity import ResponseIdKey  # response id binding
from gateway.routing.failover import HealthBoard
from gateway.routing.response_sizes import ResponseSizes, open_sizes
from gateway.settings import Settings, is_derived_issuer
from gateway.telemetry import Telemetry
from gateway.usage.anonymous_rows import AnonymousRowBound
from gateway.usage.writer import ledger_writer

# A subscriber to the pipeline's one record point: gets every finished request once.
Recorder = Callable[[RequestContext], None]

log = logging.getLogger("gateway.services")


async def warn_if_redis_unusable(limits: Limits, url: str) -> None:
    """One warning at start when GATEWAY_REDIS_URL does not answer (the limits backend's
    own health check names why); serving goes on: /readyz says it, and the policy's
    on_backend_error decides what limited requests get."""
    health = await limits.backend.health()
    if health != "ok":
        where = url_place(url)
        log.warning(
            f"{health.removeprefix('error: ')} at {where} (GATEWAY_REDIS_URL); serving "
            "without it until it answers (see /readyz and limits.on_backend_error)",
            extra={"fields": {"redis": where, "error": health}},
        )


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    policy: PolicyStore
    providers: ProviderSet
    health: HealthBoard
    keys: SigningKeyStore
    verifier: Authenticator  # our own tokens and external issuers' (policy auth.issuers)
    clients: ClientRegistry
    issuer: TokenIssuer
    engine: AsyncEngine
    access_log: AccessLog
    policy_versions: PolicyService  # the versioned store the admin API and CLI change
    recorders: tuple[Recorder, ...]  # the access log, the ledger, metrics and traces
    in_flight: InFlight  # inference requests under way, for the shutdown drain
    classifiers: Classifiers  # guardrail classifier calls; HTTP session opened on first use
    cache: CacheBackend  # response cache (issue 14): Redis if configured, else in-process
    limits: Limits  # budgets, rate limits, concurrency (issue 9)
    telemetry: Telemetry  # traces and metrics; they subscribe to `recorders`
    response_id_key: ResponseIdKey  # response id binding: ids minted per team, every replica
    response_sizes: ResponseSizes  # streamed Responses answers' true sizes, for follow-ups


# Requests cut at the shutdown deadline need this long, at most, to close their upstream,
# settle and write their record while the providers and the recorders are still open.
DRAIN_S = 2.0


def _derived_issuers(settings: Settings) -> Callable[[str], bool]:
    """Without GATEWAY_ISSUER_URL, our own tokens minted for another port still verify."""
    if settings.issuer_url_is_explicit:
        return lambda issuer: False
    return lambda issuer: is_derived_issuer(issuer, settings.host)


@asynccontextmanager
async def build_services(
    settings: Settings,
    telemetry_for: Callable[[Settings, PolicyStore], Telemetry] = Telemetry.from_settings,
) -> AsyncIterator[Services]:
    """Open the database, load the running policy and providers; close them all on exit.

    The policy is the database's newest version; an empty database first takes
    the policy folder as version 1. Raises PolicyInvalid when there is nothing
    valid to enforce. While running, new versions and folder edits are picked up.
    `telemetry_for` builds traces and metrics (tests: with an in-memory span exporter).
    """
    if settings.migrate_on_start:
        await migrate(settings.database_url)
    engine = create_engine(settings.database_url)
    policy_versions = PolicyService(engine, os.environ)
    try:
        policy_store = await load_running_policy(policy_versions, settings.policy_dir)
        await load_translation(policy_store.current().providers)  # litellm, off the loop
    except BaseException:
        await engine.dispose()
        raise
    providers = ProviderSet(policy_store.current().providers)
    access_log = AccessLog(settings.access_log)
    ledger = ledger_writer(settings)  # usage ledger: queue → batches → DB, else the spool
    anonymous = AnonymousRowBound(ledger.record)  # rows of unverified callers: bounded
    in_flight = InFlight()
    clients = ClientRegistry(engine, login_limits=LoginLimits.from_settings(settings))
    telemetry = telemetry_for(settings, policy_store)
    if telemetry.metrics is not None:
        telemetry.metrics.watch_ledger(ledger.backlog)
    # External issuers' keys, fetched only where api_base may point; the session opens on first
    # fetch. The settings check has refused a malformed GATEWAY_UPSTREAM_ALLOW already.
    jwks = JwksCache(upstreams=UpstreamRules.from_env(os.environ))
    classifiers = Classifiers(UpstreamRules.from_env(os.environ))
    cache = open_cache(settings.redis_url)  # response cache (issue 14); connects on first use
    response_sizes = open_sizes(settings.redis_url)  # connects on first use
    try:
        # A short current-key cache: `gateway keys rotate` run anywhere signs here within 1 s.
        keys = SigningKeyStore(
            engine,
            current_ttl_s=CURRENT_KEY_POLL_S,
            retired_verify_s=retired_key_verify_s(settings.token_ttl_s, settings.token_leeway_s),
        )
        await keys.current()  # the first start creates the signing key
        await keys.start()  # `keys rotate` run anywhere retires the old key here within 1 s
        response_id_key = await load_response_id_key(engine)  # response id binding
        verifier = Authenticator(
            TokenVerifier(
                settings.issuer_url,
                settings.audience,
                keys,
                leeway_s=settings.token_leeway_s,
                also_accepts=_derived_issuers(settings),
                max_lifetime_s=settings.token_ttl_s,  # what the issuer mints, never longer
            ),
            policy_store,
            jwks,
            is_revoked=clients.is_revoked,  # our own clients' tokens stop within 2 s of revoke
        )
        await clients.start()  # keeps the revoked client ids fresh until stop()
        await ledger.start()  # replays spools left by dead processes, then drains
        issuer = TokenIssuer(
            issuer_url=settings.issuer_url,
            audience=settings.audience,
            token_ttl_s=settings.token_ttl_s,
            keys=keys,
            clients=clients,
        )
        async with (
            keep_policy_in_sync(policy_versions, policy_store, providers, settings.policy_dir),
            open_limits(settings, engine, ledger.caught_up) as limits,  # limits (issue 9)
        ):
            if settings.redis_url:
                await warn_if_redis_unusable(limits, settings.redis_url)
            try:
                yield Services(
                    settings=settings,
                    policy=policy_store,
                    providers=providers,
                    health=HealthBoard(on_cooldown=telemetry.on_cooldown),
                    keys=keys,
                    verifier=verifier,
                    clients=clients,
                    issuer=issuer,
                    engine=engine,
                    access_log=access_log,
                    policy_versions=policy_versions,
                    recorders=(access_log.record, anonymous.record, *telemetry.recorders),
                    in_flight=in_flight,
                    classifiers=classifiers,
                    cache=cache,  # response cache (issue 14)
                    limits=limits,
                    telemetry=telemetry,
                    response_id_key=response_id_key,  # response id binding
                    response_sizes=response_sizes,
                )
            finally:
                # uvicorn shuts the lifespan down right after cancelling the requests
                # still running at its deadline; let them finish their `finally` first.
                await in_flight.drain(DRAIN_S)
    finally:
        try:
            await ledger.close()  # after the drain: every row to the DB, else the spool
            await clients.stop()
            await keys.stop()
            await jwks.close()
            await classifiers.close()
            await cache.close()  # response cache (issue 14)
            await response_sizes.close()
            await providers.close()
            await engine.dispose()
            # Exports the spans still queued: a blocking HTTP call, so off the loop.
            await asyncio.to_thread(telemetry.close)
        finally:
            access_log.close()  # last, so a line recorded during teardown is still written
