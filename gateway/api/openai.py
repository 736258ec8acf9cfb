"""The OpenAI-compatible edge: parse the request, run the pipeline, render the answer.

No policy logic here. Every response carries `x-request-id`; answers from an
upstream carry `x-gateway-deployment`. A client that hangs up cancels the work
in flight (and with it the upstream request).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway import pipeline
from gateway.api.body import check_body, read_json_object
from gateway.api.guard import json_response, request_id_of, requires_scope
from gateway.auth.principal import SCOPE_INVOKE, Principal
from gateway.context import RequestContext
from gateway.errors import (
    ClientDisconnected,
    GatewayError,
    ModelNotFound,
    error_response,
    quoted,
    unexpected,
)
from gateway.providers.base import Endpoint
from gateway.relay import StreamRelay
from gateway.services import Services

log = logging.getLogger("gateway.api")
T = TypeVar("T")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class Disconnected(Exception):
    """The client went away before the answer was ready."""


class DisconnectWatch:
    """Cancel the current task when the client disconnects.

    One watcher task reads `receive` (after the body has been consumed, the
    next message is `http.disconnect`); the work itself runs in the request's
    own task, so watching costs one small task, not two.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._owner = asyncio.current_task()
        self.is_disconnected = False
        self.is_done = False
        self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        if not self.is_done and self._owner is not None:
            self.is_disconnected = True
            self._owner.cancel()

    def absorb(self) -> bool:
        """After a CancelledError: True (and uncancelled) when it was our disconnect."""
        if self.is_disconnected and self._owner is not None:
            self._owner.uncancel()
            return True
        return False

    def stop(self) -> None:
        self.is_done = True
        self._watcher.cancel()


async def cancel_on_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """Await `work`; if the client disconnects first, cancel it (closing the upstream call)."""
    watch = DisconnectWatch(receive)
    try:
        return await work
    except asyncio.CancelledError:
        if watch.absorb():
            raise Disconnected from None
        raise
    finally:
        watch.stop()


class EventStreamResponse:
    """Send a relay's events as SSE; a client disconnect cancels the relay at once."""

    def __init__(
        self,
        ctx: RequestContext,
        relay: StreamRelay,
        headers: list[tuple[bytes, bytes]],
        services: Services,
    ) -> None:
        self.ctx = ctx
        self.relay = relay
        self.headers = headers
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = self.ctx
        self.services.access_log.stream_started()
        watch = DisconnectWatch(receive)
        events = self.relay.events()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})
            async for event in events:
                if ctx.first_byte_s is None:
                    ctx.first_byte_s = ctx.elapsed_s()
                await send({"type": "http.response.body", "body": event, "more_body": True})
            watch.stop()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not watch.absorb():
                ctx.outcome = "cancelled"  # the server cut it at its shutdown deadline
                raise
            # The client is gone and nobody awaits more; the relay closed the upstream.
            ctx.outcome = "client_disconnected"
        finally:
            watch.stop()
            try:
                await events.aclose()
                # Charged for what was generated, even when the client hung up.
                ctx.usage = await self.relay.final_usage()
            except Exception:  # the request's line is written regardless: it is the record
                log.exception("could not settle a stream's usage")
                ctx.outcome, ctx.error_code = "gateway_error", "internal_error"
            finally:  # even if cancelled again while settling: shutdown waits for this
                self.services.access_log.stream_ended(ctx)


def _headers(ctx: RequestContext) -> dict[str, str]:
    headers = {"x-request-id": ctx.request_id}
    if ctx.deployment is not None:
        headers["x-gateway-deployment"] = ctx.deployment.label
    return headers


async def handle_inference(request: Request, endpoint: Endpoint) -> Response | EventStreamResponse:
    services: Services = request.state.services
    ctx = RequestContext(request_id=request_id_of(request), endpoint=endpoint)
    streaming = False
    try:
        ctx.principal = await pipeline.authenticate(request.headers.get("authorization"), services)
        body = await read_json_object(request, services.settings.max_body_bytes)
        ctx.model, ctx.is_stream = check_body(endpoint, body)
        policy = services.policy.current()
        route = pipeline.authorize(ctx, policy, ctx.principal, ctx.model)
        route = pipeline.servable(route, ctx, services)
        route, upstream_body, ids = pipeline.pin_conversation(ctx, route, body)
        if ctx.is_stream:
            relay = await cancel_on_disconnect(
                request.receive, pipeline.open_stream(ctx, route, upstream_body, services, ids)
            )
            streaming = True
            headers = SSE_HEADERS + [(k.encode(), v.encode()) for k, v in _headers(ctx).items()]
            return EventStreamResponse(ctx, relay, headers, services)
        raw = await cancel_on_disconnect(
            request.receive, pipeline.complete(ctx, route, upstream_body, services, ids)
        )
        return Response(raw, media_type="application/json", headers=_headers(ctx))
    except (Disconnected, ClientDisconnected):
        ctx.outcome = "client_disconnected"
        ctx.status = 499
        return Response(status_code=499)
    except GatewayError as error:
        ctx.status = error.status
        ctx.outcome = "refused" if error.status < 500 else "upstream_error"
        ctx.error_code = error.code
        response = error_response(error, ctx.request_id)
        if ctx.deployment is not None and error.status < 500:
            response.headers["x-gateway-deployment"] = ctx.deployment.label
        return response
    except asyncio.CancelledError:
        ctx.outcome = "cancelled"  # the server cut it at its shutdown deadline
        raise
    except Exception as exc:
        # Rendered by the app's last-resort handler; the access line must say so too.
        told = unexpected(exc)
        ctx.status, ctx.outcome, ctx.error_code = told.status, "gateway_error", told.code
        raise
    finally:
        if not streaming:
            services.access_log.record(ctx)


def _endpoint(endpoint: Endpoint) -> Callable[[Request], Awaitable[Any]]:
    async def handler(request: Request) -> Any:
        return await handle_inference(request, endpoint)

    handler.__name__ = f"{endpoint}_endpoint"
    return handler


def _model_object(alias: str, created: int) -> dict[str, object]:
    return {"id": alias, "object": "model", "created": created, "owned_by": "llm-gateway"}


async def _list_models(request: Request, services: Services, principal: Principal) -> Response:
    """Only the models the caller's team may use, in OpenAI's list shape."""
    policy = services.policy.current()
    aliases = policy.visible_models(pipeline.team_of(policy, principal))
    data = [_model_object(alias, services.started_at) for alias in aliases]
    return json_response({"object": "list", "data": data})


async def _get_model(request: Request, services: Services, principal: Principal) -> Response:
    alias = request.path_params["model"]
    policy = services.policy.current()
    if alias not in policy.visible_models(pipeline.team_of(policy, principal)):
        raise ModelNotFound(
            f"The model {quoted(alias)} does not exist or you do not have access to it.",
            param="model",
        )
    return json_response(_model_object(alias, services.started_at))


routes = [
    Route("/v1/chat/completions", _endpoint("chat"), methods=["POST"]),
    Route("/v1/completions", _endpoint("completions"), methods=["POST"]),
    Route("/v1/embeddings", _endpoint("embeddings"), methods=["POST"]),
    Route("/v1/responses", _endpoint("responses"), methods=["POST"]),
    Route("/v1/models", requires_scope(SCOPE_INVOKE, _list_models), methods=["GET"]),
    Route("/v1/models/{model:path}", requires_scope(SCOPE_INVOKE, _get_model), methods=["GET"]),
]
