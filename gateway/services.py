"""The long-lived parts of a running gateway, built once in the lifespan and passed on.

Nothing here is a module global: tests build their own `Services`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

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
from gateway.providers.registry import ProviderSet
from gateway.routing.affinity import ResponseIdKey  # response id binding
from gateway.routing.failover import HealthBoard
from gateway.settings import Settings, is_derived_issuer
from gateway.telemetry import Telemetry
from gateway.usage.writer import ledger_writer

# A subscriber to the pipeline's one record point: gets every finished request once.
Recorder = Callable[[RequestContext], None]

log = logging.getLogger("gateway.services")
CAUSE_MAX_CHARS = 160  # of an error's message in /readyz and the start-up warning
REDIS_PROBE_TIMEOUT_S = 1.0


def url_secrets(url: str | None) -> tuple[str, ...]:
    """The password a URL carries, as written and decoded: never shown with a cause."""
    try:
        password = urlsplit(url or "").password
    except ValueError:  # a port that is no number: the settings check refused it already
        return ()
    return tuple({password, unquote(password)}) if password else ()


def error_cause(error: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """`Class: its first line` (a SQLAlchemy error's driver text, `orig`), for /readyz and
    the log: cut at CAUSE_MAX_CHARS, `secrets` masked."""
    origin = getattr(error, "orig", None)
    source = origin if isinstance(origin, BaseException) else error
    first = source.args[0] if source.args and isinstance(source.args[0], str) else str(source)
    line = next((part.strip() for part in first.splitlines() if part.strip()), "")
    for secret in secrets:
        line = line.replace(secret, "***")
    line = line[:CAUSE_MAX_CHARS]
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


class RedisProbe:
    """A small client of GATEWAY_REDIS_URL that only asks PING, for the operator: why Redis
    fails, at start (one warning) and in /readyz. Serving does not wait for it."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis  # redis only when configured
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self._client: Any = aioredis.Redis.from_url(
            url,
            socket_timeout=REDIS_PROBE_TIMEOUT_S,
            socket_connect_timeout=REDIS_PROBE_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        self._secrets = url_secrets(url)
        parts = urlsplit(url)
        # Where it points, for the log: host, port and database (no user, no password).
        self.where = f"{parts.hostname or ''}:{parts.port or 6379}{parts.path}"
        if parts.scheme == "unix":
            self.where = parts.path

    async def problem(self, within_s: float = REDIS_PROBE_TIMEOUT_S) -> str | None:
        """None when Redis answers PING, else "unreachable (Class: cause)" or "refused
        (Class: cause)": a wrong database index or password is refused, not unreachable."""
        from redis.exceptions import AuthenticationError, ResponseError

        try:
            async with asyncio.timeout(within_s):
                await self._client.ping()
        except TimeoutError:
            return f"unreachable (no answer within {within_s:g} s)"
        except (AuthenticationError, ResponseError) as error:
            return f"refused ({error_cause(error, self._secrets)})"
        except Exception as error:  # redis-py's ConnectionError, an OSError: any is "not"
            return f"unreachable ({error_cause(error, self._secrets)})"
        return None

    async def warn_if_unusable(self) -> None:
        """One warning at start when Redis does not answer; serving goes on (/readyz says
        it, and the policy's on_backend_error decides what limited requests get)."""
        problem = await self.problem()
        if problem is not None:
            log.warning(
                f"Redis at {self.where} (GATEWAY_REDIS_URL) is {problem}; serving without "
                "it until it answers (see /readyz and limits.on_backend_error)",
                extra={"fields": {"redis": self.where, "error": problem}},
            )

    async def close(self) -> None:
        await self._client.aclose()


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
    started_at: int
    access_log: AccessLog
    policy_versions: PolicyService  # the versioned store the admin API and CLI change
    recorders: tuple[Recorder, ...]  # the access log, the ledger, metrics and traces
    in_flight: InFlight  # inference requests under way, for the shutdown drain
    classifiers: Classifiers  # guardrail classifier calls; HTTP session opened on first use
    cache: CacheBackend  # response cache (issue 14): Redis if configured, else in-process
    limits: Limits  # budgets, rate limits, concurrency (issue 9)
    telemetry: Telemetry  # traces and metrics; they subscribe to `recorders`
    response_id_key: ResponseIdKey  # response id binding: ids minted per team, every replica
    redis_probe: RedisProbe | None = None  # why GATEWAY_REDIS_URL fails, for /readyz


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
        policy, version = await load_running_policy(policy_versions, settings.policy_dir)
    except BaseException:
        await engine.dispose()
        raise
    providers = ProviderSet(policy.providers)
    access_log = AccessLog(settings.access_log)
    ledger = ledger_writer(settings)  # usage ledger: queue → batches → DB, else the spool
    in_flight = InFlight()
    clients = ClientRegistry(engine, login_limits=LoginLimits.from_settings(settings))
    policy_store = PolicyStore(policy, version)
    telemetry = telemetry_for(settings, policy_store)
    if telemetry.metrics is not None:
        telemetry.metrics.watch_ledger(ledger.backlog)
    # External issuers' keys, fetched only where api_base may point; the session opens on first
    # fetch. The settings check has refused a malformed GATEWAY_UPSTREAM_ALLOW already.
    jwks = JwksCache(upstreams=UpstreamRules.from_env(os.environ))
    classifiers = Classifiers(UpstreamRules.from_env(os.environ))
    cache = open_cache(settings.redis_url)  # response cache (issue 14); connects on first use
    redis_probe = RedisProbe(settings.redis_url) if settings.redis_url else None
    try:
        if redis_probe is not None:
            await redis_probe.warn_if_unusable()
        # A short current-key cache: `gateway keys rotate` run anywhere signs here within 1 s.
        keys = SigningKeyStore(
            engine,
            current_ttl_s=CURRENT_KEY_POLL_S,
            retired_verify_s=retired_key_verify_s(settings.token_ttl_s, settings.token_leeway_s),
        )
        await keys.current()  # the first start creates the signing key
        response_id_key = await load_response_id_key(engine)  # response id binding
        verifier = Authenticator(
            TokenVerifier(
                settings.issuer_url,
                settings.audience,
                keys,
                leeway_s=settings.token_leeway_s,
                also_accepts=_derived_issuers(settings),
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
                    started_at=int(time.time()),
                    access_log=access_log,
                    policy_versions=policy_versions,
                    recorders=(access_log.record, ledger.record, *telemetry.recorders),
                    in_flight=in_flight,
                    classifiers=classifiers,
                    cache=cache,  # response cache (issue 14)
                    limits=limits,
                    telemetry=telemetry,
                    response_id_key=response_id_key,  # response id binding
                    redis_probe=redis_probe,
                )
            finally:
                # uvicorn shuts the lifespan down right after cancelling the requests
                # still running at its deadline; let them finish their `finally` first.
                await in_flight.drain(DRAIN_S)
    finally:
        try:
            await ledger.close()  # after the drain: every row to the DB, else the spool
            await clients.stop()
            await jwks.close()
            await classifiers.close()
            await cache.close()  # response cache (issue 14)
            if redis_probe is not None:
                await redis_probe.close()
            await providers.close()
            await engine.dispose()
            # Exports the spans still queued: a blocking HTTP call, so off the loop.
            await asyncio.to_thread(telemetry.close)
        finally:
            access_log.close()  # last, so a line recorded during teardown is still written
