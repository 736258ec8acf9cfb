"""The OpenAI-compatible edge: parse the request, hand it to the pipeline, render.

No policy logic and no stage here: `pipeline.handle` runs the request from token
to record through an `AsgiExchange`, which reads and checks the body, watches
for a client that hangs up, and writes the answer to the ASGI `send`. Every
response carries `x-request-id`.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway import pipeline
from gateway.api.body import check_request_soon, is_large, model_named, parse_json_object
from gateway.api.edge import request_id_of, requires_scope
from gateway.auth.authorization_header import authorization_of
from gateway.auth.principal import SCOPE_INVOKE, Principal
from gateway.cache.directives import cache_control_of
from gateway.drain import Drain, drain_of
from gateway.errors import NotFound, cut
from gateway.providers.base import Endpoint
from gateway.services import Services


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
        """Stop watching. The watcher is not cancelled (a cancellation costs more than
        the request's own routing): the server wakes its `receive` with
        `http.disconnect` once the response is complete, and it then ends by itself."""
        self.is_done = True


class AsgiExchange:
    """One request's ASGI side, as the pipeline's `Exchange`."""

    __slots__ = (
        "_drain",
        "_max_body_bytes",
        "_receive",
        "_request",
        "_send",
        "_watch",
        "cache_control",
        "endpoint",
        "has_answered",
        "model",
        "peer",
        "request_id",
    )

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        endpoint: Endpoint,
        max_body_bytes: int,
        drain: Drain | None = None,
    ) -> None:
        self._request = Request(scope, receive)
        self._drain = drain
        self._receive = receive
        self._send = send
        self._max_body_bytes = max_body_bytes
        self._watch: DisconnectWatch | None = None
        self.request_id = request_id_of(self._request)
        self.endpoint = endpoint
        client = scope.get("client")  # uvicorn resolves GATEWAY_TRUSTED_PROXIES' forwarding
        self.peer: str | None = client[0] if client else None
        headers = self._request.headers
        # response cache (issue 14): Cache-Control, or Pragma: no-cache without it (RFC 9111)
        self.cache_control = cache_control_of(
            headers.getlist("cache-control"), headers.getlist("pragma")
        )
        self.has_answered = False
        self.model: str | None = None

    @property
    def authorization(self) -> str | None:
        """Read when the pipeline authenticates, so a repeated header is refused there (400)."""
        return authorization_of(self._request.scope["headers"])

    async def read_body(self) -> pipeline.ParsedBody:
        raw, body = await parse_json_object(self._request, self._max_body_bytes, self.endpoint)
        # Known before any field is checked: a body refused for another field is still
        # recorded under the model it named (per-model error counts).
        self.model = model_named(body)
        model, is_stream = await check_request_soon(raw, body, self.endpoint)
        self._watch = DisconnectWatch(self._receive)
        return pipeline.ParsedBody(body, model, is_stream, is_large(raw))

    def left(self) -> bool:
        return self._watch is not None and self._watch.absorb()

    def cut_by_shutdown(self) -> bool:
        if self._drain is None or not self._drain.is_cut:
            return False
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True

    async def answer(self, status: int, body: bytes, headers: pipeline.Headers) -> None:
        self.stop_watching()
        self.has_answered = True
        headers.append((b"content-length", str(len(body)).encode()))
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})

    async def start_stream(self, headers: pipeline.Headers) -> None:
        self.has_answered = True
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})

    async def send(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end_stream(self) -> None:
        self.stop_watching()
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    def stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.stop()


class InferenceEndpoint:
    """The ASGI app of one inference route (chat, completions, embeddings, responses)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services: Services = scope["state"]["services"]
        drain = drain_of(scope["state"])
        exchange = AsgiExchange(
            scope, receive, send, self.endpoint, services.settings.max_body_bytes, drain
        )
        task = asyncio.current_task()
        if drain is not None and task is not None:
            drain.track(task)  # cut (cancelled) if still under way when the grace runs out
        try:
            # A draining replica refuses new requests in the pipeline: on the books too.
            draining = drain is not None and drain.is_draining
            await pipeline.handle(exchange, services, draining=draining)
        finally:
            exchange.stop_watching()
            if drain is not None and task is not None:
                drain.untrack(task)


async def stored_responses(request: Request, services: Services, principal: Principal) -> Response:
    """GET/DELETE /v1/responses/{id}, its input_items, input_tokens: a gateway that
    stores nothing says so plainly (rather than "unknown path") and says what works."""
    raise NotFound(
        f"This gateway does not serve {request.method} {cut(request.url.path)}: it keeps no "
        "responses to retrieve, delete, list or count. Continue a conversation by sending "
        "previous_response_id with POST /v1/responses."
    )


routes = [
    Route(
        "/v1/responses/{rest:path}",
        requires_scope(SCOPE_INVOKE, stored_responses),
        methods=["GET", "POST", "DELETE"],
    ),
    Route("/v1/chat/completions", InferenceEndpoint("chat"), methods=["POST"]),
    Route("/v1/completions", InferenceEndpoint("completions"), methods=["POST"]),
    Route("/v1/embeddings", InferenceEndpoint("embeddings"), methods=["POST"]),
    Route("/v1/responses", InferenceEndpoint("responses"), methods=["POST"]),
]
