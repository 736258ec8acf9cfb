"""Admin API for OAuth clients: list, create (the secret shown once), revoke.

Parses and renders only; the work is `ClientRegistry`, which the CLI calls
too. Every path needs a token with `gateway:admin` (none → 401, without the
scope → 403); the token's subject is the actor in the audit log, with its client_id,
issuer and team as the entry's `via` (`admin.api_actor`). Errors are
OpenAI-shaped; an unknown parameter is refused, as elsewhere in the admin API.
A client for a team the running policy lacks is created, as by the CLI, with
the CLI's warning in the reply's `warning` when it may call models (an admin or
finance call does not read the team).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.admin import api_actor
from gateway.api.body import read_json_object
from gateway.api.edge import Endpoint, Handler, json_response, requires_scope
from gateway.api.query import check_query
from gateway.auth.clients import InvalidClientSpec, UnknownClient
from gateway.auth.principal import SCOPE_ADMIN, SCOPE_INVOKE, Principal
from gateway.errors import InvalidRequest, NotFound, cut, quoted
from gateway.one_line import control_character_problem
from gateway.policy.names import team_name_problem
from gateway.services import Services

CREATE_PARAMETERS = ("team", "name", "scopes")


def _admin_only(handler: Handler) -> Endpoint:
    return requires_scope(SCOPE_ADMIN, handler)


async def list_clients(request: Request, services: Services, principal: Principal) -> Response:
    check_query(request.query_params, ())
    records = await services.clients.list()
    return json_response({"object": "list", "data": [r.as_json() for r in records]})


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"Invalid type for '{name}': expected a string.", param=name)
    return value


async def _unknown_team_warning(services: Services, team: str, scopes: Iterable[str]) -> str | None:
    """The CLI's warning when `team` is not in the running policy version and the client
    may call models (gateway:invoke, the one scope bound to a team), else None."""
    if SCOPE_INVOKE not in scopes:
        return None
    running = await services.policy_versions.current()
    if running is None or team in (running.bundle.get("teams") or {}):
        return None
    return (
        f"team {team!r} is not in the running policy version {running.version}; "
        "inference calls with this client's tokens (gateway:invoke) will be refused until it is"
    )


async def create_client(request: Request, services: Services, principal: Principal) -> Response:
    body = await read_json_object(request, services.settings.max_body_bytes)
    # A typo such as `scope` must not create a client with other scopes than asked for.
    unknown = [key for key in body if key not in CREATE_PARAMETERS]
    if unknown:
        raise InvalidRequest(f"Unknown parameter: {quoted(unknown[0])}.", param=cut(unknown[0]))
    team = _optional_str(body, "team")
    if not team:
        raise InvalidRequest("Missing required parameter: 'team'.", param="team")
    name = _optional_str(body, "name")
    problem = None if name is None else control_character_problem(name)
    if problem is not None:  # it would forge a line of `gateway clients list`
        raise InvalidRequest(f"Invalid 'name': {problem}.", param="name")
    scopes = body.get("scopes")
    if scopes is None:
        scopes = []
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise InvalidRequest(
            "Invalid type for 'scopes': expected an array of strings.", param="scopes"
        )
    problem = team_name_problem(team.strip())  # the registry strips it
    if problem is not None:
        raise InvalidRequest(
            f"Invalid 'team': {quoted(team)} can never be a team: {problem}.", param="team"
        )
    try:
        record, secret = await services.clients.create(team, name, scopes, api_actor(principal))
    except InvalidClientSpec as invalid:
        raise InvalidRequest(str(invalid), param=invalid.param) from None
    created: dict[str, Any] = {**record.as_json(), "client_secret": secret}
    warning = await _unknown_team_warning(services, record.team, record.scopes)
    if warning is not None:
        created["warning"] = warning
    response = json_response(created, 201)
    response.headers["cache-control"] = "no-store"  # the secret is shown this once
    return response


async def revoke_client(request: Request, services: Services, principal: Principal) -> Response:
    client_id = request.path_params["client_id"]
    try:
        record = await services.clients.revoke(client_id, api_actor(principal))
    except UnknownClient:
        raise NotFound(f"No OAuth client {quoted(client_id)}.", param="client_id") from None
    return json_response(record.as_json())


routes = [
    Route("/admin/clients", _admin_only(list_clients), methods=["GET"]),
    Route("/admin/clients", _admin_only(create_client), methods=["POST"]),
    Route("/admin/clients/{client_id}", _admin_only(revoke_client), methods=["DELETE"]),
]
