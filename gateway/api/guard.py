"""What every edge outside the inference path does first: authenticate, require a
scope, render refusals.

Refusals are OpenAI-shaped (gateway/errors.py); every answer carries x-request-id.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway import pipeline
from gateway.auth.principal import Principal
from gateway.errors import GatewayError, error_response
from gateway.services import Services

# Any visible ASCII (no spaces or control characters, so it is safe in headers and logs).
_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,256}$")
Handler = Callable[[Request, Services, Principal], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def request_id_of(request: Request) -> str:
    """The caller's x-request-id when it is sane, else a new one."""
    given = request.headers.get("x-request-id")
    if given and _REQUEST_ID.match(given):
        return given
    return "req_" + os.urandom(16).hex()


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def requires_scope(scope: str, handler: Handler) -> Endpoint:
    """An endpoint that runs `handler` only for a valid token carrying `scope`."""

    async def endpoint(request: Request) -> Response:
        services: Services = request.state.services
        request_id = request_id_of(request)
        try:
            principal = await pipeline.authenticate(request.headers.get("authorization"), services)
            pipeline.require_scope(principal, scope)
            response = await handler(request, services, principal)
        except GatewayError as error:
            return error_response(error, request_id)
        response.headers["x-request-id"] = request_id
        return response

    endpoint.__name__ = handler.__name__
    return endpoint
