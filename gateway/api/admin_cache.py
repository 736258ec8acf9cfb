"""Admin API for the response cache: `DELETE /admin/cache?team=&model=`.

Needs a token with `gateway:admin` (none → 401, without the scope → 403). Clears
the running gateway's backend: Redis for every replica, or this process's memory
(with several workers and no Redis, each worker has its own; the reply says how
many entries this one held). An unknown or empty parameter is refused rather than
read as "all": a typo must not empty every team's cache.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.edge import json_response, requires_scope
from gateway.auth.principal import SCOPE_ADMIN, Principal
from gateway.cache.entry import CacheUnavailable
from gateway.errors import GatewayError, InvalidRequest, cut, quoted
from gateway.services import Services

PARAMETERS = ("team", "model")


class CacheBackendUnavailable(GatewayError):
    """The shared cache (Redis) did not answer: nothing was cleared; retryable."""

    status = 503
    type = "api_error"
    code = "cache_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"retry-after": "1"})  # as the other outages' 503s


def _filter(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1 or not values[0]:
        raise InvalidRequest(
            f"Invalid '{name}': give one non-empty value, or leave it out to mean all.",
            param=name,
        )
    return values[0]


async def clear_cache(request: Request, services: Services, principal: Principal) -> Response:
    unknown = [name for name in request.query_params if name not in PARAMETERS]
    if unknown:
        raise InvalidRequest(f"Unknown parameter: {quoted(unknown[0])}.", param=cut(unknown[0]))
    team, model = _filter(request, "team"), _filter(request, "model")
    try:
        removed = await services.cache.clear(team=team, model=model)
    except CacheUnavailable as error:
        raise CacheBackendUnavailable(f"The response cache did not answer: {error}.") from None
    cleared = {"object": "cache.cleared", "team": team, "model": model, "deleted": removed}
    return json_response(cleared)


routes = [Route("/admin/cache", requires_scope(SCOPE_ADMIN, clear_cache), methods=["DELETE"])]
