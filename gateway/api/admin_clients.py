"""Admin API for OAuth clients: list, create (the secret shown once), revoke.

Parses and renders only; the work is `ClientRegistry`, which the CLI calls
too. Every path needs a token with `gateway:admin` (none → 401, without the
scope → 403); the token's subject is the actor in the audit log. Errors are
OpenAI-shaped.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.body import read_json_object
from gateway.api.guard import Endpoint, Handler, json_response, requires_scope
from gateway.auth.clients import InvalidClientSpec, UnknownClient
from gateway.auth.principal import SCOPE_ADMIN, Principal
from gateway.errors import InvalidRequest, NotFound
from gateway.services import Services


def _admin_only(handler: Handler) -> Endpoint:
    return requires_scope(SCOPE_ADMIN, handler)


async def list_clients(request: Request, services: Services, principal: Principal) -> Response:
    records = await services.clients.list()
    return json_response({"object": "list", "data": [r.as_json() for r in records]})


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"Invalid type for '{name}': expected a string.", param=name)
    return value


async def create_client(request: Request, services: Services, principal: Principal) -> Response:
    body = await read_json_object(request, services.settings.max_body_bytes)
    team = _optional_str(body, "team")
    if not team:
        raise InvalidRequest("Missing required parameter: 'team'.", param="team")
    name = _optional_str(body, "name")
    scopes = body.get("scopes")
    if scopes is None:
        scopes = []
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise InvalidRequest(
            "Invalid type for 'scopes': expected an array of strings.", param="scopes"
        )
    try:
        record, secret = await services.clients.create(team, name, scopes, principal.subject)
    except InvalidClientSpec as invalid:
        raise InvalidRequest(str(invalid), param=invalid.param) from None
    response = json_response({**record.as_json(), "client_secret": secret}, 201)
    response.headers["cache-control"] = "no-store"  # the secret is shown this once
    return response


async def revoke_client(request: Request, services: Services, principal: Principal) -> Response:
    client_id = request.path_params["client_id"]
    try:
        record = await services.clients.revoke(client_id, principal.subject)
    except UnknownClient:
        raise NotFound(f"No OAuth client '{client_id}'.", param="client_id") from None
    return json_response(record.as_json())


routes = [
    Route("/admin/clients", _admin_only(list_clients), methods=["GET"]),
    Route("/admin/clients", _admin_only(create_client), methods=["POST"]),
    Route("/admin/clients/{client_id}", _admin_only(revoke_client), methods=["DELETE"]),
]
