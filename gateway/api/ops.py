"""Operations endpoints: liveness, readiness and Prometheus metrics. No token needed (as
probes and scrapers expect), no access line (probes every few seconds would drown the
log), but an x-request-id like every answer."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.edge import json_response, request_id_of
from gateway.causes import error_cause, url_secrets
from gateway.db import DatabaseFileChanged
from gateway.drain import is_draining
from gateway.errors import NotFound, error_response
from gateway.policy.schema import BackendErrorMode
from gateway.services import Services

# Kubernetes probes time out after 1 s by default: a hung database must make us
# answer "not ready" within that, not hang the probe.
READY_CHECK_TIMEOUT_S = 0.8


async def healthz(request: Request) -> Response:
    """The process is up and serving."""
    response = json_response({"status": "ok"})
    response.headers["x-request-id"] = request_id_of(request)
    return response


async def readyz(request: Request) -> Response:
    """Ready for traffic: not draining, the database answers, the newest policy version
    is enforced (a replica that cannot compile it serves an older one: not ready) and
    Redis answers, unless the policy serves without it (on_backend_error: open)."""
    if is_draining(request.scope.get("state")):
        # At once, before any check: the load balancer must stop sending here now.
        draining = json_response({"status": "draining", "checks": {"shutdown": "draining"}}, 503)
        draining.headers["x-request-id"] = request_id_of(request)
        return draining
    services: Services = request.state.services
    checks: dict[str, str] = {"policy": services.policy.behind or "ok"}
    checks["database"] = await _database_check(request.app.state, services)
    is_ready = all(v == "ok" for v in checks.values())
    if services.settings.redis_url:  # limits: the Redis they live in (issue 9)
        checks["redis"], is_redis_ready = await _redis_check(services)
        is_ready = is_ready and is_redis_ready
    response = json_response(
        {"status": "ready" if is_ready else "not_ready", "checks": checks},
        200 if is_ready else 503,
    )
    response.headers["x-request-id"] = request_id_of(request)
    return response


async def _database_check(state: State, services: Services) -> str:
    """ "ok", or why not, within READY_CHECK_TIMEOUT_S. The query runs as a task of its own,
    which the probe stops waiting for at the deadline without cancelling it: a hung
    connection's cancellation waits for the driver to close it (seconds, past a
    probe's timeout). One check at a time: a probe arriving while one is still under way
    waits for that one, so a hung database holds one connection attempt, not one a probe."""
    running: asyncio.Task[str] | None = getattr(state, "database_check", None)
    if running is None or running.done():
        running = asyncio.get_running_loop().create_task(_query_database(services))
        state.database_check = running
    done, _ = await asyncio.wait({running}, timeout=READY_CHECK_TIMEOUT_S)
    if not done:
        return f"error: no answer within {READY_CHECK_TIMEOUT_S} s"
    return running.result()


async def _query_database(services: Services) -> str:
    try:
        async with services.engine.connect() as conn:
            # The schema, not just the server: a database recreated empty is not ready.
            await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
    except DatabaseFileChanged as gone:  # deleted or replaced under us: writes would be lost
        return f"error: {gone.reason}"
    except Exception as exc:  # any driver error means "not ready"; say which and why
        secrets = url_secrets(services.settings.database_url)
        return f"error: {error_cause(exc, secrets)}"
    return "ok"


async def _redis_check(services: Services) -> tuple[str, bool]:
    """Redis's check, and whether the replica is ready as far as Redis goes. Under
    `on_backend_error: open` an unreachable Redis keeps it ready (the check says so):
    every replica shares that Redis, so all would leave the load balancer at once and
    `open` would serve no one."""
    health = await services.limits.backend.health()
    if health == "ok":
        return health, True
    if services.policy.current().on_backend_error is BackendErrorMode.OPEN:
        return f"{health} (on_backend_error open: serving unchecked)", True
    return health, False


async def metrics(request: Request) -> Response:
    """Prometheus text of every worker's counters; 404 when GATEWAY_METRICS is off."""
    services: Services = request.state.services
    found = services.telemetry.metrics
    if found is None:
        return error_response(
            NotFound("Metrics are off (GATEWAY_METRICS)."), request_id_of(request)
        )
    from gateway.telemetry.metrics import CONTENT_TYPE

    response = Response(found.render(), headers={"content-type": CONTENT_TYPE})
    response.headers["x-request-id"] = request_id_of(request)
    return response


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
