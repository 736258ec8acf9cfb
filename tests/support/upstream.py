"""A mock OpenAI-compatible upstream with scriptable fault modes.

    async with MockUpstream(name="a") as up:
        up.behave("status", status=429, retry_after=1)   # default for all requests
        up.script(["hang", "ok"])                         # one-shot, consumed first
        ... point the gateway at up.base_url ...
        assert up.requests[0].json["model"] == "gpt-4o-mini"
        await up.wait_for_disconnects(1)

The server runs with aiohttp's ``handler_cancellation=True``: when a client closes
its connection, the handler is cancelled at once and the request is recorded as
``disconnected`` (a server shutdown or a deliberate ``stream_drop`` is not counted).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import orjson
from aiohttp import web

Mode = Literal[
    "ok",  # deterministic reply (streamed when the request has stream=true)
    "status",  # error `status` with an OpenAI error body (or `body`), optional retry-after
    "slow",  # sleep `delay_s` (default 1 s), then ok
    "hang",  # never answer; ends when the client goes away
    "html",  # 200 text/html
    "broken_json",  # 200 application/json, truncated
    "stream_no_usage",  # ok, but never any usage (old vLLM); also omitted when not streaming
    "stream_drop",  # stream `fault_after` events, then abort the TCP connection
    "stream_stall",  # stream `fault_after` events, then hang
    "stream_cut",  # stream `fault_after` events, then end the response cleanly (no final event)
]
MODES: frozenset[str] = frozenset(get_args(Mode))
Kind = Literal["chat", "completions", "embeddings", "responses", "models", "model"]

_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How the mock answers one request. Only the fields the mode uses matter."""

    mode: Mode = "ok"
    status: int = 500  # "status"
    body: Any = None  # "status": custom error body (dict/list -> JSON, str/bytes verbatim)
    retry_after: float | None = None  # "status": `retry-after` header, in seconds
    headers: Mapping[str, str] = field(default_factory=dict)  # extra headers, every mode
    delay_s: float | None = None  # wait before answering (any mode; "slow" defaults to 1 s)
    chunks: int = 5  # content pieces in a stream (the reply text split N ways)
    fault_after: int = 2  # "stream_drop"/"stream_stall": SSE events sent before the fault
    chunk_delay_s: float = 0.0  # pause between SSE events
    content: str | None = None  # reply text; default "mock reply from <name>"
    prompt_tokens: int | None = None  # default: words in the request's prompt (min 1)
    completion_tokens: int | None = None  # default: words in the reply

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {sorted(MODES)}")


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lowercase names
    body: bytes
    json: Any  # parsed body, None when empty or not JSON
    behaviour: Behaviour | None = None  # what the mock did (None: rejected before scripting)
    completed: bool = False  # the whole response was handed to the client
    disconnected: bool = False  # the client went away before the response finished
    dropped: bool = False  # the mock aborted the connection on purpose ("stream_drop")


_REC = web.RequestKey("mock_upstream_record", RecordedRequest)


def _words(value: Any) -> int:
    """A stable stand-in for a token count: words in strings, 1 per int (token arrays)."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return 1
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    if isinstance(value, dict):
        return _words(value.get("content")) + _words(value.get("text"))
    return 0


def _split(text: str, n: int) -> list[str]:
    return [text[i * len(text) // n : (i + 1) * len(text) // n] for i in range(max(n, 1))]


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    return head + b"data: " + payload + b"\n\n"


class MockUpstream:
    """An aiohttp server on 127.0.0.1:0 speaking the OpenAI (and Azure OpenAI) wire format."""

    def __init__(
        self,
        name: str = "mock",
        *,
        api_key: str | None = None,
        models: Iterable[str] = ("gpt-4o-mini", "text-embedding-3-small"),
        embedding_dims: int = 8,
    ) -> None:
        self.name = name
        self.api_key = api_key  # when set: OpenAI paths need "Bearer <key>", Azure `api-key`
        self.models = tuple(models)
        self.embedding_dims = embedding_dims
        self.requests: list[RecordedRequest] = []
        self.default = Behaviour()
        self._queue: list[Behaviour] = []
        self._ids = itertools.count(1)
        self._closing = False
        self._closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- scripting and inspection -------------------------------------------------

    def behave(self, mode: Mode | Behaviour = "ok", **opts: Any) -> None:
        """Set the behaviour for every following request (after any scripted ones)."""
        self.default = mode if isinstance(mode, Behaviour) else Behaviour(mode, **opts)

    def script(self, steps: Iterable[Mode | Behaviour]) -> None:
        """Queue one-shot behaviours, consumed in order before the default applies."""
        self._queue.extend(s if isinstance(s, Behaviour) else Behaviour(s) for s in steps)

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    @property
    def origin(self) -> str:
        """Scheme, host and port: the Azure `azure_endpoint`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def disconnects(self) -> int:
        return sum(r.disconnected for r in self.requests)

    async def wait_for_requests(self, n: int = 1, within_s: float = 5.0) -> None:
        await self._wait(lambda: len(self.requests) >= n, within_s)

    async def wait_for_disconnects(self, n: int = 1, within_s: float = 5.0) -> None:
        await self._wait(lambda: self.disconnects >= n, within_s)

    async def _wait(self, predicate: Callable[[], bool], within_s: float) -> None:
        async with asyncio.timeout(within_s):
            while not predicate():
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------

    async def __aenter__(self) -> MockUpstream:
        app = web.Application(middlewares=[self._record])
        v1: dict[Kind, str] = {"chat": "chat/completions", "completions": "completions"}
        v1["embeddings"] = "embeddings"
        for kind, tail in v1.items():
            app.router.add_post(f"/v1/{tail}", self._handler(kind))
            app.router.add_post(f"/openai/deployments/{{deployment}}/{tail}", self._handler(kind))
        app.router.add_post("/v1/responses", self._handler("responses"))
        app.router.add_get("/v1/models", self._handler("models"))
        app.router.add_get("/v1/models/{model}", self._handler("model"))
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True  # cancellations from here on are ours, not client disconnects
        self._closed.set()  # releases "hang" / "stream_stall" / "slow" handlers
        if self._runner is not None:
            await self._runner.cleanup()

    # --- request plumbing ---------------------------------------------------------

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        raw = await request.read()
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=raw,
            json=parsed,
        )
        request[_REC] = rec
        self.requests.append(rec)
        self._notify()
        try:
            resp = await handler(request)
        except (asyncio.CancelledError, ConnectionResetError):
            if not (self._closing or rec.dropped):
                rec.disconnected = True
                self._notify()
            raise
        if not resp.prepared and not self._closing:  # plain response; streams mark themselves
            rec.completed = True
        return resp

    def _handler(self, kind: Kind) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if "deployment" not in request.match_info:  # OpenAI style
                bearer = request.headers.get("authorization")
                if self.api_key and bearer != f"Bearer {self.api_key}":
                    return self._error(401, "Incorrect API key provided.")
                return await self._respond(request, kind, request.match_info.get("model"))
            key = request.headers.get("api-key")  # Azure style
            if not key or (self.api_key and key != self.api_key):
                msg = "Access denied due to invalid subscription key or wrong API endpoint."
                return self._error(401, body={"error": {"code": "401", "message": msg}})
            if "api-version" not in request.query:
                msg = "The api-version query parameter (?api-version=) is required."
                code = "MissingApiVersionParameter"
                return self._error(400, body={"error": {"code": code, "message": msg}})
            return await self._respond(request, kind, request.match_info["deployment"])

        return handle

    def _headers(self, b: Behaviour | None = None) -> dict[str, str]:
        extra = b.headers if b else {}
        return {"x-mock-name": self.name, "x-request-id": f"req_mock{next(self._ids)}", **extra}

    def _error(
        self, status: int, message: str = "", *, body: Any = None, b: Behaviour | None = None
    ) -> web.Response:
        if body is None:
            type_, code = _ERROR_KINDS.get(status, ("server_error", None))
            message = message or f"mock upstream {self.name} returned {status}"
            body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
        headers = self._headers(b)
        if b and b.retry_after is not None:
            headers["retry-after"] = f"{b.retry_after:g}"
        data = body if isinstance(body, str | bytes) else orjson.dumps(body)
        return web.Response(
            status=status, body=data, headers=headers, content_type="application/json"
        )

    async def _park(self) -> None:
        """Wait until the client goes away (handler cancelled) or the mock shuts down."""
        await self._closed.wait()

    async def _respond(
        self, request: web.Request, kind: Kind, model: str | None
    ) -> web.StreamResponse:
        rec = request[_REC]
        if request.method == "POST" and not isinstance(rec.json, dict):
            return self._error(400, "We could not parse the JSON body of your request.")
        if kind == "model" and model not in self.models:
            return self._error(404, f"The model '{model}' does not exist")
        b = self._queue.pop(0) if self._queue else self.default
        rec.behaviour = b
        req: dict[str, Any] = rec.json or {}
        model = req.get("model") or model or self.models[0]
        delay = b.delay_s if b.delay_s is not None else (1.0 if b.mode == "slow" else 0.0)
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), delay)
        stream = bool(req.get("stream")) and kind in ("chat", "completions", "responses")
        if b.mode == "status":
            return self._error(b.status, body=b.body, b=b)
        if b.mode == "html":
            body = "<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
            return web.Response(text=body, content_type="text/html", headers=self._headers(b))
        if b.mode == "broken_json":
            body = '{"id": "chatcmpl-mock", "object": "chat.completion", "cho'
            return web.json_response(text=body, headers=self._headers(b))
        if b.mode == "hang" or (b.mode == "stream_stall" and not stream):
            await self._park()
            return self._error(503, "mock upstream shutting down", b=b)
        if b.mode == "stream_drop" and not stream:
            return await self._drop(request, rec)
        reply = Reply(self, b, kind, model, req)
        if stream:
            return await self._stream(request, rec, b, reply.events())
        return web.json_response(reply.payload(), headers=self._headers(b), dumps=_dumps)

    async def _drop(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        rec.dropped = True
        if request.transport is not None:
            request.transport.abort()
        await self._park()  # connection_lost cancels us right away
        return web.Response(status=503)

    async def _stream(
        self, request: web.Request, rec: RecordedRequest, b: Behaviour, events: list[bytes]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers=self._headers(b))
        resp.content_type = "text/event-stream"
        resp.charset = "utf-8"
        await resp.prepare(request)
        faulty = b.mode in ("stream_drop", "stream_stall", "stream_cut")
        for i, event in enumerate(events[: b.fault_after] if faulty else events):
            if i and b.chunk_delay_s:
                await asyncio.sleep(b.chunk_delay_s)
            await resp.write(event)
        if b.mode == "stream_drop":
            return await self._drop(request, rec)
        if b.mode == "stream_stall":
            await self._park()
            return resp
        await resp.write_eof()
        rec.completed = True
        return resp


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


class Reply:
    """The deterministic "ok" answer for one request, as a JSON payload or as SSE events."""

    def __init__(self, up: MockUpstream, b: Behaviour, kind: Kind, model: str, req: dict[str, Any]):
        self.up, self.b, self.kind, self.model, self.req = up, b, kind, model, req
        self.text = b.content if b.content is not None else f"mock reply from {up.name}"
        source = {"chat": "messages", "completions": "prompt", "embeddings": "input"}
        prompt = req.get(source.get(kind, "input"))
        if kind == "responses":
            prompt = [req.get("instructions"), prompt]
        self.prompt_tokens = (
            b.prompt_tokens if b.prompt_tokens is not None else max(1, _words(prompt))
        )
        self.completion_tokens = (
            b.completion_tokens if b.completion_tokens is not None else len(self.text.split())
        )
        self.usage_wanted = b.mode != "stream_no_usage"
        self.n = next(up._ids)
        self.created = int(time.time())

    def usage(self) -> dict[str, Any]:
        p, c = self.prompt_tokens, self.completion_tokens
        if self.kind == "responses":
            details = {"input_tokens_details": {"cached_tokens": 0}}
            details["output_tokens_details"] = {"reasoning_tokens": 0}
            return {"input_tokens": p, "output_tokens": c, "total_tokens": p + c, **details}
        if self.kind == "embeddings":
            return {"prompt_tokens": p, "total_tokens": p}
        details = {"prompt_tokens_details": {"cached_tokens": 0}}
        details["completion_tokens_details"] = {"reasoning_tokens": 0}
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c, **details}

    def _choices(self, last: bool, **fields: Any) -> list[dict[str, Any]]:
        return [{"index": 0, **fields, "logprobs": None, "finish_reason": "stop" if last else None}]

    def _base(self, obj: str) -> dict[str, Any]:
        prefix = "cmpl" if self.kind == "completions" else "chatcmpl"
        fields = {"id": f"{prefix}-mock{self.n}", "object": obj, "created": self.created}
        return {**fields, "model": self.model, "system_fingerprint": "fp_mock"}

    def payload(self) -> dict[str, Any]:
        if self.kind in ("models", "model"):
            data = [
                {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": self.up.name}
                for m in self.up.models
            ]
            if self.kind == "model":
                return next(d for d in data if d["id"] == self.model)
            return {"object": "list", "data": data}
        if self.kind == "embeddings":
            return self._embeddings()
        if self.kind == "responses":
            return self._response("completed")
        if self.kind == "chat":
            message = {"role": "assistant", "content": self.text, "refusal": None}
            out = {**self._base("chat.completion"), "choices": self._choices(True, message=message)}
        else:
            out = {**self._base("text_completion"), "choices": self._choices(True, text=self.text)}
        if self.usage_wanted:
            out["usage"] = self.usage()
        return out

    def _embeddings(self) -> dict[str, Any]:
        items = self.req.get("input")
        if not isinstance(items, list) or all(isinstance(i, int) for i in items):
            items = [items]  # one string, or one token array
        dims = int(self.req.get("dimensions") or self.up.embedding_dims)
        data = []
        for i, item in enumerate(items):
            digest = hashlib.sha256(orjson.dumps(item) + self.up.name.encode()).digest()
            vector = [round(digest[j % 32] / 127.5 - 1.0, 6) for j in range(dims)]
            encoded: Any = vector
            if self.req.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        out: dict[str, Any] = {"object": "list", "data": data, "model": self.model}
        if self.usage_wanted:
            out["usage"] = self.usage()
        return out

    def _item(self, status: str) -> dict[str, Any]:
        done = status == "completed"
        content = [{"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}]
        fields = {"type": "message", "id": f"msg_mock{self.n}", "role": "assistant"}
        return {**fields, "status": status, "content": content if done else []}

    def _response(self, status: str) -> dict[str, Any]:
        done = status == "completed"
        fields = {"id": f"resp_mock{self.n}", "object": "response", "created_at": self.created}
        return {
            **fields,
            "status": status,
            "model": self.model,
            "previous_response_id": self.req.get("previous_response_id"),
            "output": [self._item(status)] if done else [],
            "usage": self.usage() if done and self.usage_wanted else None,
            "error": None,
            "incomplete_details": None,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
        }

    def events(self) -> list[bytes]:
        pieces = _split(self.text, self.b.chunks)
        if self.kind == "responses":
            return self._response_events(pieces)
        chunks: list[dict[str, Any]] = []
        if self.kind == "chat":  # OpenAI's shape: role chunk, content chunks, finish chunk
            base = self._base("chat.completion.chunk")
            deltas: list[dict[str, Any]] = [{"role": "assistant", "content": "", "refusal": None}]
            deltas += [{"content": p} for p in pieces] + [{}]
            for i, delta in enumerate(deltas):
                chunks.append({**base, "choices": self._choices(i == len(deltas) - 1, delta=delta)})
        else:
            base = self._base("text_completion")
            for i, piece in enumerate(pieces):
                chunks.append({**base, "choices": self._choices(i == len(pieces) - 1, text=piece)})
        if self.usage_wanted and (self.req.get("stream_options") or {}).get("include_usage"):
            for chunk in chunks:
                chunk["usage"] = None
            chunks.append({**base, "choices": [], "usage": self.usage()})
        return [_sse(c) for c in chunks] + [_sse(b"[DONE]")]

    def _response_events(self, pieces: list[str]) -> list[bytes]:
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        at = {"item_id": f"msg_mock{self.n}", "output_index": 0, "content_index": 0}
        text, kind = self.text, "response.output_text"
        pending, done = self._item("in_progress"), self._item("completed")
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": self._response("in_progress")},
            {"type": "response.in_progress", "response": self._response("in_progress")},
            {"type": "response.output_item.added", "output_index": 0, "item": pending},
            {"type": "response.content_part.added", **at, "part": part},
        ]
        events += [{"type": f"{kind}.delta", **at, "delta": p, "logprobs": []} for p in pieces]
        events += [
            {"type": f"{kind}.done", **at, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **at, "part": {**part, "text": text}},
            {"type": "response.output_item.done", "output_index": 0, "item": done},
            {"type": "response.completed", "response": self._response("completed")},
        ]
        return [_sse({**e, "sequence_number": i}, e["type"]) for i, e in enumerate(events)]
