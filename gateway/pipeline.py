"""The request path, stage by stage: authenticate → authorize → route → settle.

Each stage is a plain function of the request context and the services; a
refusal is raised as a GatewayError. Later stages (guardrails, budgets, the
ledger) slot in where the comments mark them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, TypeVar

import orjson

from gateway.auth.principal import SCOPE_INVOKE, Principal
from gateway.context import RequestContext
from gateway.errors import (
    AuthenticationFailed,
    EndpointNotSupported,
    InsufficientScope,
    ModelNotAllowed,
    ModelNotFound,
    UpstreamRejected,
    quoted,
)
from gateway.policy.compiled import Deployment, ModelRoute, Policy, TeamRules
from gateway.providers.base import (
    Provider,
    UpstreamCall,
    UpstreamClientError,
    UpstreamFailure,
)
from gateway.relay import StreamRelay, close_stream
from gateway.routing.affinity import ResponseIds
from gateway.routing.failover import Attempt, call_with_failover
from gateway.services import Services
from gateway.usage.usage import estimate_usage, output_text, usage_from_report

T = TypeVar("T")

ENDPOINT_PATHS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
    "responses": "/v1/responses",
}


async def authenticate(authorization: str | None, services: Services) -> Principal:
    """Bearer token → Principal (401 on anything else)."""
    if not authorization:
        raise AuthenticationFailed(
            "You didn't provide an access token. Send 'Authorization: Bearer TOKEN'.",
            token_sent=False,
        )
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed(
            "The Authorization header must be 'Bearer TOKEN'.", token_sent=True
        )
    return await services.verifier.verify(token)


def require_scope(principal: Principal, scope: str) -> None:
    if not principal.has_scope(scope):
        raise InsufficientScope(f"The access token lacks the '{scope}' scope.", scope=scope)


def team_of(policy: Policy, principal: Principal) -> TeamRules:
    team = policy.teams.get(principal.team)
    if team is None:
        # A token for a team the policy no longer has is as good as revoked.
        raise AuthenticationFailed("The access token's team is not known.", token_sent=True)
    return team


def authorize(ctx: RequestContext, policy: Policy, principal: Principal, model: str) -> ModelRoute:
    """May this principal call this model? 403/404 otherwise."""
    require_scope(principal, SCOPE_INVOKE)
    team = team_of(policy, principal)
    route = policy.models.get(model)
    if route is None:
        raise ModelNotFound(
            f"The model {quoted(model)} does not exist or you do not have access to it.",
            param="model",
        )
    if not team.allows(model):
        raise ModelNotAllowed(
            f"Team '{team.name}' is not allowed to use the model '{model}'.", param="model"
        )
    return route


def servable(route: ModelRoute, ctx: RequestContext, services: Services) -> ModelRoute:
    """Keep the deployments whose provider can serve this endpoint (400 if none can)."""
    providers = services.providers
    usable = tuple(
        d for d in route.deployments if ctx.endpoint in providers.get(d.provider).endpoints
    )
    if not usable:
        raise EndpointNotSupported(
            f"The model '{route.alias}' cannot serve {ENDPOINT_PATHS[ctx.endpoint]}.",
            param="model",
        )
    if len(usable) == len(route.deployments):
        return route
    return ModelRoute(route.alias, usable, route.routing, route.price)


def pin_conversation(
    ctx: RequestContext, route: ModelRoute, body: Mapping[str, Any]
) -> tuple[ModelRoute, Mapping[str, Any], ResponseIds | None]:
    """Responses API: a follow-up goes to the deployment that holds its conversation."""
    if ctx.endpoint != "responses":
        return route, body, None
    ids = ResponseIds()
    route, body = ids.pin(route, body)
    return route, body, ids


def upstream_call(
    ctx: RequestContext, body: Mapping[str, Any], deployment: Deployment
) -> UpstreamCall:
    """The client's body for one deployment: its model, and always a usage report."""
    rewritten = dict(body)
    rewritten["model"] = deployment.model
    if ctx.is_stream and ctx.endpoint in ("chat", "completions"):
        options = body.get("stream_options")
        rewritten["stream_options"] = {
            **(options if isinstance(options, Mapping) else {}),
            "include_usage": True,
        }
    return UpstreamCall(ctx.endpoint, rewritten, deployment.model, ctx.is_stream, ctx.request_id)


def rejected(error: UpstreamClientError) -> UpstreamRejected:
    return UpstreamRejected(
        error.status, error.message, type_=error.type, param=error.param, code=error.code
    )


async def _first_answer(
    ctx: RequestContext, route: ModelRoute, services: Services, attempt: Attempt[T]
) -> tuple[Deployment, T]:
    """The failover loop over this service's providers; an upstream's refusal of the
    request itself becomes the caller's error."""
    try:
        return await call_with_failover(
            ctx, route, lambda d: services.providers.get(d.provider), services.health, attempt
        )
    except UpstreamClientError as error:
        raise rejected(error) from None


async def complete(
    ctx: RequestContext,
    route: ModelRoute,
    body: Mapping[str, Any],
    services: Services,
    response_ids: ResponseIds | None = None,
) -> bytes:
    """A whole response from the first deployment that answers; usage recorded on ctx."""

    async def attempt(
        provider: Provider, deployment: Deployment, deadline: float
    ) -> tuple[bytes, dict[str, Any]]:
        reply = await provider.send(upstream_call(ctx, body, deployment))
        try:
            payload = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            raise UpstreamFailure(f"{deployment.label}: response is not JSON") from None
        if not isinstance(payload, dict):
            raise UpstreamFailure(f"{deployment.label}: response is not a JSON object")
        return reply.body, payload

    deployment, (raw, payload) = await _first_answer(ctx, route, services, attempt)
    ctx.usage = usage_from_report(payload.get("usage")) or await asyncio.to_thread(
        estimate_usage, ctx.endpoint, body, deployment.model, output_text(ctx.endpoint, payload)
    )
    if response_ids is not None:
        response_ids.learn(deployment, payload)
        raw = response_ids.rewrite(raw)
    return raw


async def open_stream(
    ctx: RequestContext,
    route: ModelRoute,
    body: Mapping[str, Any],
    services: Services,
    response_ids: ResponseIds | None = None,
) -> StreamRelay:
    """Start a stream; fails over until some deployment has sent its first event."""

    async def attempt(
        provider: Provider, deployment: Deployment, deadline: float
    ) -> tuple[Any, bytes, float]:
        events = await provider.open_stream(upstream_call(ctx, body, deployment))
        try:
            first = await anext(events)
        except StopAsyncIteration:
            raise UpstreamFailure(f"{deployment.label}: empty stream") from None
        except BaseException:
            await close_stream(events)
            raise
        return events, first, deadline

    deployment, (events, first, deadline) = await _first_answer(ctx, route, services, attempt)
    options = body.get("stream_options")
    health = services.health
    return StreamRelay(
        ctx,
        events,
        first,
        body=body,
        deployment=deployment,
        client_wants_usage=isinstance(options, Mapping) and options.get("include_usage") is True,
        idle_timeout_s=route.routing.attempt_timeout_s,
        deadline=deadline,
        clock=health.clock,
        on_failure=lambda failure: health.failed(deployment, route, failure),
        response_ids=response_ids,
    )
