"""Which listener serves which paths when the admin plane has a port of its own
(`--admin-port`, GATEWAY_ADMIN_PORT).

The teams' listener then answers 404 for /admin and /finance, as if they did not
exist there, and for /metrics (every team's names, models, usage and cost, with no
token: for the operators' listener only, probe p23); the admin listener serves only the
admin plane, the probes, /metrics and the OpenAPI document, so a misrouted team request
is not served on it either. The
port a request came in on is the listening socket's (ASGI `scope["server"]`),
which a client cannot choose with a header.
"""

from __future__ import annotations

from enum import StrEnum

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from gateway.api.edge import access_line
from gateway.errors import NotFound, cut, error_response
from gateway.services import Services

ADMIN_PREFIXES = ("/admin", "/finance")
# What an operator's tools need on the admin listener besides the admin plane.
ADMIN_LISTENER_ALSO = frozenset({"/healthz", "/readyz", "/openapi.json", "/metrics"})
# Served on the admin listener alone when there is one: every team's figures.
ADMIN_LISTENER_ONLY = frozenset({"/metrics"})


class Plane(StrEnum):
    TEAMS = "teams"
    ADMIN = "admin"


def plane_of_path(path: str) -> Plane:
    """/admin and /finance, and anything under them, are the admin plane."""
    for prefix in ADMIN_PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return Plane.ADMIN
    return Plane.TEAMS


def listener_serves(path: str, local_port: int | None, admin_port: int) -> bool:
    """With an admin port: does the listener on `local_port` serve `path`?"""
    is_admin_listener = local_port == admin_port
    if plane_of_path(path) is Plane.ADMIN or path in ADMIN_LISTENER_ONLY:
        return is_admin_listener
    return not is_admin_listener or path in ADMIN_LISTENER_ALSO


def is_off_plane(scope: Scope, admin_port: int) -> bool:
    """Is this HTTP request for a path its listener does not serve?"""
    server = scope.get("server")
    local_port = server[1] if server else None
    return not listener_serves(scope["path"], local_port, admin_port)


async def refuse_off_plane(scope: Scope, receive: Receive, send: Send) -> None:
    """The 404 the router gives an unknown path (OpenAI body, request id, access line)."""
    request = Request(scope, receive)
    services: Services = scope["state"]["services"]
    error = NotFound(f"Unknown path: {request.method} {cut(request.url.path)}")
    with access_line(request, services) as ctx:
        ctx.end(error.status, error.code)
        response = error_response(error, ctx.request_id)
    await response(scope, receive, send)
