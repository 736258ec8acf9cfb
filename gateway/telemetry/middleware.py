"""The ASGI middleware around each inference route: one server span per request.

It wraps the whole ASGI call (not each `receive`/`send` message, which would cost a
span per stream chunk: REFERENCE.md §3.4) and makes the request's trace current for
the task. With tracing off it passes the call through after one attribute read.
"""

from __future__ import annotations

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.telemetry.current import CURRENT_TRACE


class TracingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracing = scope["state"]["services"].telemetry.tracing
        if tracing is None:
            await self.app(scope, receive, send)
            return
        request_trace = tracing.begin(scope["method"], scope["path"], scope["headers"])
        token = CURRENT_TRACE.set(request_trace)
        failed = True
        try:
            await self.app(scope, receive, send)
            failed = False
        finally:
            CURRENT_TRACE.reset(token)
            request_trace.end(failed)


def traced(routes: list[Route]) -> list[Route]:
    """The inference routes, each app wrapped in the tracing middleware."""
    return [
        Route(route.path, TracingMiddleware(route.app), methods=list(route.methods or ()))
        for route in routes
    ]
