"""`GET /v1/models` and `GET /v1/models/{model}`: the models a caller's team may use."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import pipeline
from gateway.api.edge import json_response, request_id_of, requires_scope
from gateway.auth.principal import SCOPE_INVOKE, Principal
from gateway.errors import ModelNotFound, quoted
from gateway.limits.stage import standing_headers
from gateway.services import Services


def _model_object(alias: str, created: int) -> dict[str, object]:
    return {"id": alias, "object": "model", "created": created, "owned_by": "llm-gateway"}


async def _list_models(request: Request, services: Services, principal: Principal) -> Response:
    """Only the models the caller's team may use, in OpenAI's list shape."""
    policy = services.policy.current()
    aliases = policy.visible_models(pipeline.team_of(policy, principal))
    data = [_model_object(alias, services.policy.created_at) for alias in aliases]
    return await _with_limits(
        json_response({"object": "list", "data": data}), request, services, principal
    )


async def _get_model(request: Request, services: Services, principal: Principal) -> Response:
    alias = request.path_params["model"]
    policy = services.policy.current()
    if alias not in policy.visible_models(pipeline.team_of(policy, principal)):
        limits = await standing_headers(principal, services, request_id_of(request))
        raise ModelNotFound(
            f"The model {quoted(alias)} does not exist or you do not have access to it.",
            param="model",
            headers={name.decode(): value.decode() for name, value in limits},
        )
    return await _with_limits(
        json_response(_model_object(alias, services.policy.created_at)),
        request,
        services,
        principal,
    )


async def _with_limits(
    response: Response, request: Request, services: Services, principal: Principal
) -> Response:
    """A limited team's answers all carry x-ratelimit-* (SPEC §2), these too: its rate
    keys as they stand (a model list takes nothing from them)."""
    response.raw_headers += await standing_headers(principal, services, request_id_of(request))
    return response


routes = [
    Route("/v1/models", requires_scope(SCOPE_INVOKE, _list_models), methods=["GET"]),
    Route("/v1/models/{model:path}", requires_scope(SCOPE_INVOKE, _get_model), methods=["GET"]),
]
