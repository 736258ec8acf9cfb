"""Build the Starlette app: routes, OpenAI-shaped error rendering, the lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from gateway.api import admin, admin_cache, admin_clients, finance, models, oauth, openapi, ops
from gateway.api import openai as openai_api
from gateway.api.edge import access_line, request_id_of
from gateway.api.planes import is_off_plane, refuse_off_plane
from gateway.errors import (
    GatewayError,
    MethodNotAllowed,
    NotFound,
    cut,
    error_response,
    unexpected,
)
from gateway.logs import AccessLog
from gateway.services import Services, build_services
from gateway.settings import Settings
from gateway.telemetry.middleware import traced

log = logging.getLogger("gateway.app")


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's own refusals (unknown path 404, wrong method 405): no handler ran,
    so the access line is written here."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    error: GatewayError
    if status == 404:
        error = NotFound(f"Unknown path: {request.method} {cut(request.url.path)}")
    elif status == 405:
        error = MethodNotAllowed(
            f"Method {request.method} is not allowed on {cut(request.url.path)}",
            headers={"allow": _allowed_methods(request)},
        )
    else:
        error = GatewayError("The gateway hit an internal error.")
    with access_line(request, request.state.services) as ctx:
        ctx.end(error.status, error.code)
        return error_response(error, ctx.request_id)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    """A refusal a handler raised instead of rendering (a client that hung up mid-upload,
    a 499 nobody receives): its OpenAI body, without a trace."""
    error = exc if isinstance(exc, GatewayError) else unexpected(exc)
    return error_response(error, request_id_of(request))


def _allowed_methods(request: Request) -> str:
    """RFC 9110 §15.5.6: a 405 lists the methods the path takes. Starlette's own
    header names only the first route matching the path; a path may have several."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches({**request.scope, "method": next(iter(route.methods))})
            if match is Match.FULL:
                methods |= route.methods
    return ", ".join(sorted(methods))


async def _database_outage(request: Request, exc: Exception) -> Response:
    """The database did not answer (down, locked, its SQLite file deleted or replaced
    while serving): a state /readyz reports, not a bug. One warning line, no trace; the
    caller gets unexpected()'s retryable 503 `database_unavailable`."""
    from gateway.db import DatabaseFileChanged

    if isinstance(exc, DatabaseFileChanged):
        reason = exc.reason
    else:
        orig = getattr(exc, "orig", None)  # the driver's error, without SQLAlchemy's SQL
        reason = f"{type(orig or exc).__name__}: {orig or exc}"
    log.warning(
        "database unavailable: answered 503",
        extra={
            "fields": {
                "request_id": request_id_of(request),  # the access line's and the answer's
                "path": cut(request.url.path),
                "reason": cut(reason),
            }
        },
    )
    return error_response(unexpected(exc), request_id_of(request))


async def _internal_error(request: Request, exc: Exception) -> Response:
    # The trace goes to our log, never to the caller.
    request_id = request_id_of(request)  # the access line's and the answer's
    fields = {"request_id": request_id, "path": cut(request.url.path)}
    log.error("unhandled error", exc_info=exc, extra={"fields": fields})
    return error_response(unexpected(exc), request_id)


@contextmanager
def reopen_on_sighup(access_log: AccessLog) -> Iterator[None]:
    """While running, SIGHUP (logrotate's postrotate) reopens a file access log.

    Without a handler SIGHUP would end the process and lose buffered lines.
    Only SIGHUP is taken: uvicorn's SIGINT/SIGTERM handlers stay as they are.
    Under `--workers` N the supervisor passes its SIGHUP on to each worker
    (gateway/server.py), and each worker's lifespan runs this on its main thread.
    With the log on stderr (or off) there is nothing to reopen, and SIGHUP is taken all
    the same (reopen does nothing): its default action ended the process.
    """
    loop = asyncio.get_running_loop()
    # Refused off the main thread (asyncio: RuntimeError, uvloop: ValueError); Windows
    # has no SIGHUP. Then the log is simply not reopened.
    try:
        before = signal.getsignal(signal.SIGHUP)
        loop.add_signal_handler(signal.SIGHUP, access_log.reopen)
    except (RuntimeError, ValueError, NotImplementedError, AttributeError):
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        # The loop would leave SIGHUP's default (end the process): put back what was
        # there (a worker's ignore, so a late logrotate cannot cut its shutdown short).
        if before is not None:
            signal.signal(signal.SIGHUP, before)


class GatewayApp(Starlette):
    """Starlette, with the inference routes dispatched ahead of its middleware stack.

    A stream sends one ASGI message per upstream read, and each would otherwise pass
    through two middleware wrappers that only track whether the response started;
    the inference endpoint renders its own errors (api/openai.py). Every other
    request, and any other method on those paths (405), goes through Starlette.
    """

    def __init__(
        self, fast_routes: list[Route], *, admin_port: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._fast = {route.path: route.app for route in fast_routes}
        self._admin_port = admin_port  # --admin-port: the planes' split (api/planes.py)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # --- hook (deploy, issue 13): the admin plane on its own listener ---
        admin_port = self._admin_port
        if admin_port is not None and scope["type"] == "http" and is_off_plane(scope, admin_port):
            await refuse_off_plane(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self._fast.get(scope["path"])
            if endpoint is not None:
                scope["app"] = self
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


# The collector's thresholds once start-up objects are frozen. A request makes a few
# hundred container objects and frees nearly all of them itself (reference counts); at
# CPython's default (700, 10, 10) a young collection ran every few requests, walking
# whatever requests were in flight. Less often: -2 to -6 % CPU per request with
# everything on (bench/RESULTS.md, session 9); a young collection then walks ~10k
# objects, well under a millisecond.
GC_THRESHOLDS = (10_000, 20, 20)


def build_app(settings: Settings, services: Services | None = None) -> Starlette:
    """The ASGI app; `services` lets tests bring their own, else the lifespan builds them."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        if services is not None:
            app.state.services = services
            yield {"services": services}
            return
        async with build_services(settings) as built:
            # Start-up objects (policy, modules, keys) live for the whole process:
            # moving them out of the collector's reach keeps GC pauses short.
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            app.state.services = built  # for tests and tools; handlers use request.state
            with reopen_on_sighup(built.access_log):
                yield {"services": built}

    inference = traced(openai_api.routes)  # telemetry: the server span of each request
    app = GatewayApp(
        inference,
        admin_port=settings.admin_port,
        routes=[
            *inference,
            *models.routes,
            *ops.routes,
            *oauth.routes,
            *admin_clients.routes,
            *admin.routes,
            *finance.routes,
            *admin_cache.routes,  # response cache (issue 14)
            *openapi.routes,
        ],
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            GatewayError: _gateway_error,
            # Outages only; another DBAPIError (a bug in our SQL) keeps its trace below.
            OperationalError: _database_outage,
            InterfaceError: _database_outage,
            PoolTimeout: _database_outage,
            Exception: _internal_error,
        },
    )
    # A trailing slash is an unknown path (a 404 with an OpenAI body and a request
    # id), not a redirect that a POSTing client would have to follow.
    app.router.redirect_slashes = False
    return app


def app_from_env() -> Starlette:
    """uvicorn's factory: every worker builds its app from the GATEWAY_* environment."""
    from gateway.logs import configure_logging
    from gateway.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    return build_app(settings)
