"""Operations endpoints: liveness and readiness. No token needed."""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.services import Services


def _json(payload: dict[str, object], status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


async def healthz(request: Request) -> Response:
    """The process is up and serving."""
    return _json({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready for traffic: the database answers and a policy is loaded."""
    services: Services = request.state.services
    checks: dict[str, str] = {"policy": "ok"}
    try:
        async with services.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "not ready"; say which kind
        checks["database"] = f"error: {type(exc).__name__}"
    is_ready = all(v == "ok" for v in checks.values())
    return _json(
        {"status": "ready" if is_ready else "not_ready", "checks": checks},
        200 if is_ready else 503,
    )


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
