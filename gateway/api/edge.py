"""What every edge outside the inference path does first: authenticate, require a
scope, render refusals, write the request's access line.

Refusals are OpenAI-shaped (gateway/errors.py); every answer carries x-request-id.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway import pipeline
from gateway.auth.authorization_header import authorization_of
from gateway.auth.principal import Principal
from gateway.context import EdgeContext, Outcome, new_request_id
from gateway.errors import GatewayError, error_response, unexpected
from gateway.services import Services

# Printable ASCII, up to 256 characters, spaces only inside (no control characters: it
# is safe in headers and logs); anything else is replaced by a new id.
_REQUEST_ID = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]{0,254}[\x21-\x7e])?\Z")
MAX_LOGGED_PATH = 512  # an unknown path is the caller's text: keep its line short
Handler = Callable[[Request, Services, Principal], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


_SCOPE_KEY = "gateway.request_id"


def request_id_of(request: Request) -> str:
    """The caller's x-request-id when it is sane, else a new one; the same id however
    often it is asked for one request (the handler, its access line, the error handler)."""
    scope = request.scope
    known: str | None = scope.get(_SCOPE_KEY)
    if known is not None:
        return known
    given = request.headers.get("x-request-id")
    request_id = given if given and _REQUEST_ID.match(given) else new_request_id()
    scope[_SCOPE_KEY] = request_id
    return request_id


@contextmanager
def access_line(request: Request, services: Services) -> Iterator[EdgeContext]:
    """The request's access line, written when the block ends, however it ends.

    The block sets the status with `ctx.end(...)`; an exception is logged as a 500
    (the app's last-resort handler renders it), a cancellation as `cancelled`.
    """
    path = request.url.path[:MAX_LOGGED_PATH]
    ctx = EdgeContext(request_id_of(request), request.method, path, peer=_peer(request))
    try:
        yield ctx
    except asyncio.CancelledError:
        ctx.outcome = Outcome.CANCELLED  # the server cut it at its shutdown deadline
        raise
    except Exception as exc:
        # As the app's handlers will render it: a GatewayError as itself (a client that
        # hung up mid-upload: 499), anything else as the last resort's 500/503.
        told = exc if isinstance(exc, GatewayError) else unexpected(exc)
        ctx.end(told.status, told.code)
        raise
    finally:
        services.access_log.record_edge(ctx)


def _peer(request: Request) -> str | None:
    """The caller's address (uvicorn resolves a trusted proxy's X-Forwarded-For)."""
    client = request.scope.get("client")
    return client[0] if client else None


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def requires_scope(scope: str, handler: Handler, *, also: tuple[str, ...] = ()) -> Endpoint:
    """An endpoint that runs `handler` only for a valid token carrying `scope` (or one
    of the scopes in `also`: finance reports take `gateway:finance` or `gateway:admin`)."""

    async def endpoint(request: Request) -> Response:
        services: Services = request.state.services
        with access_line(request, services) as ctx:
            try:
                authorization = authorization_of(request.scope["headers"])  # once, or 400
                ctx.principal = await pipeline.authenticate(authorization, services)
                if not any(ctx.principal.has_scope(other) for other in also):
                    pipeline.require_scope(ctx.principal, scope)
                response = await handler(request, services, ctx.principal)
            except GatewayError as error:
                ctx.end(error.status, error.code)
                ctx.error_detail = error.detail
                return error_response(error, ctx.request_id)
            ctx.end(response.status_code)
            response.headers["x-request-id"] = ctx.request_id
            return response

    endpoint.__name__ = handler.__name__
    return endpoint
