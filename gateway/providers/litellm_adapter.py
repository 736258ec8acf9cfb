"""Anthropic, Gemini and Bedrock upstreams, translated by litellm.

Owns: importing litellm lazily (offline, quiet, on first call), turning an
`UpstreamCall` into litellm's `acompletion` / `atext_completion` / `aembedding`
arguments, rendering the result as OpenAI JSON or SSE event bytes (OpenAI's fields
only: litellm_fields.py), and mapping
litellm's exceptions, once, into `UpstreamFailure` / `UpstreamClientError`.

Must not: import litellm at module import, retry (the failover loop does),
log or echo a key, or let a litellm exception escape. Only the OpenAI request
fields listed below reach litellm: its other keyword arguments (`api_base`,
`mock_response`, `aws_sts_endpoint`, ...) must never be settable from a body.
Nor may litellm connect anywhere but through this provider's own session (the
upstream rules, no redirect followed: `_http_client`), or fetch a link a
request names (media_links.py).
"""

from __future__ import annotations

import base64
import functools
import importlib
import os
import re
import ssl
import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Literal

import aiohttp
import orjson

from gateway.policy.secrets import redaction_secrets
from gateway.policy.upstreams import DEFAULT_RULES, UpstreamRules
from gateway.providers.base import (
    DONE_EVENT,
    MASKED_KEY,
    Endpoint,
    UpstreamCall,
    UpstreamClientError,
    UpstreamFailure,
    UpstreamReply,
    retry_after_seconds,
)
from gateway.providers.error_answer import error_summary
from gateway.providers.litellm_fields import caller_message, openai_fields
from gateway.providers.litellm_input import text_inputs
from gateway.providers.media_links import linked_media
from gateway.providers.redaction import redact_error_events, secret_spellings
from gateway.providers.resolver import GuardedResolver, UpstreamRefused, guarded_trace
from gateway.providers.stream_start import says_nothing
from gateway.sse import is_error_event
from gateway.telemetry.current import add_trace_headers

Kind = Literal["anthropic", "gemini", "bedrock"]

_ENDPOINTS: dict[Kind, frozenset[Endpoint]] = {
    "anthropic": frozenset({"chat", "completions"}),
    "gemini": frozenset({"chat", "completions", "embeddings"}),
    "bedrock": frozenset({"chat", "completions", "embeddings"}),
}
_AWS_SECRETS = frozenset({"aws_access_key_id", "aws_secret_access_key", "aws_session_token"})
_EXTRA_KEYS = _AWS_SECRETS | {"aws_region_name"}

# OpenAI request fields passed on, per endpoint; litellm drops what a provider lacks.
_SAMPLING = frozenset(
    {"max_tokens", "temperature", "top_p", "n", "stop", "seed", "user",
     "presence_penalty", "frequency_penalty", "logit_bias", "logprobs"}
)  # fmt: skip
_PARAMS: dict[Endpoint, frozenset[str]] = {
    "chat": _SAMPLING
    | {"messages", "max_completion_tokens", "tools", "tool_choice", "parallel_tool_calls",
       "functions", "function_call", "response_format", "top_logprobs", "reasoning_effort",
       "modalities", "audio", "prediction", "web_search_options"},
    "completions": _SAMPLING | {"prompt", "suffix", "echo", "best_of"},
    "embeddings": frozenset({"input", "dimensions", "user"}),
}  # fmt: skip

# Statuses below 500 that say "this deployment cannot serve now", not "bad request":
# our provider key is refused (401/403), its account is out of credit (402), it has
# no such model (404: retired or misnamed; these providers serve no Responses API,
# so no 404 is about a caller's stored object), it timed out (408) or is rate
# limited / out of quota (429).
_FAILOVER_STATUSES = frozenset({401, 402, 403, 404, 408, 429})
# The reply cap sent to Anthropic when the caller gives none (it requires one):
# the figure litellm long used, within every Claude model's output limit.
ANTHROPIC_DEFAULT_MAX_TOKENS = 4096

# The HTTP client of the provider whose litellm call is running (`_invoke`): what the call
# gets where litellm would take its process-wide client instead of the one passed.
_CALL_CLIENT: ContextVar[Any] = ContextVar("litellm_call_client", default=None)
# What the running call (`_sending`) did upstream, marked by its HTTP client's hooks; one
# object, shared by the tasks litellm may start (each gets a copy of the context).
_SENT: ContextVar[_Sending | None] = ContextVar("litellm_call_sent", default=None)

# Chunks carrying nothing held before a stream's first real one (`_first_said`): litellm
# makes two of a 200 without events (the `stop`, its usage); a real stream's first has its role.
EMPTY_CHUNKS_HELD = 8
_DONE = DONE_EVENT  # an EndsWithDone: the relay settles the limits before it goes out
_URL = re.compile(r"\b(?:https?|wss?)://[^\s'\"<>]+", re.IGNORECASE)
_KEY_SHAPES = re.compile(r"\b(?:sk-[\w-]{8,}|AIza[\w-]{20,}|(?:AKIA|ASIA)[A-Z0-9]{16})")
# "litellm.RateLimitError: litellm.RateLimitError: GeminiException - ",
# "litellm.BadRequestError: AnthropicException - ", "BedrockException BadRequestError - "
_PREFIX = re.compile(r"^(?:litellm\.\w+:\s*)*(?:\w+(?:Exception|Error)(?:\s+\w+)?\s+-\s+)?")


@functools.cache
def _litellm() -> Any:
    """The litellm module, imported on first use without fetching anything."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
    # Read once, at import: litellm then downloads no image a message links to (the
    # adapter refuses those requests first; this covers a shape it does not know).
    os.environ["MAX_IMAGE_URL_DOWNLOAD_SIZE_MB"] = "0"
    import litellm
    import litellm.llms.custom_httpx.aiohttp_transport
    import litellm.llms.custom_httpx.http_handler

    # Gemini's async embeddings drop the `client` passed and take litellm's shared one, which
    # follows redirects and knows no upstream rules: they get the calling provider's.
    gemini_embed: Any = importlib.import_module(
        "litellm.llms.vertex_ai.gemini_embeddings.batch_embed_content_handler"
    )
    shared_client = gemini_embed.get_async_httpx_client

    def calling_providers_client(*args: Any, **kwargs: Any) -> Any:
        client = _CALL_CLIENT.get()
        return shared_client(*args, **kwargs) if client is None else client

    gemini_embed.get_async_httpx_client = calling_providers_client

    litellm.suppress_debug_info = True
    litellm.disable_streaming_logging = True  # per-chunk logging work nobody reads
    return litellm


class LitellmProvider:
    """One Anthropic, Gemini or Bedrock deployment behind the `Provider` interface.

    `extra` may carry `aws_region_name`, `aws_access_key_id`,
    `aws_secret_access_key` and `aws_session_token` (Bedrock), already
    resolved; any other key is a configuration error (ValueError).
    """

    def __init__(
        self,
        name: str,
        kind: Kind,
        api_base: str | None,
        api_key: str | None,
        extra: Mapping[str, str],
        upstreams: UpstreamRules = DEFAULT_RULES,
        *,
        secrets: Sequence[str] = (),
    ) -> None:
        """`upstreams`: the rules every address litellm connects to obeys (resolver.py);
        `secrets`: the config's redaction secrets (`ProviderConfig.secrets`: its
        references' values too, a token in api_base's path), kept out of every error
        and log line along with `api_key` and the AWS keys."""
        unknown = sorted(set(extra) - _EXTRA_KEYS)
        if unknown:
            raise ValueError(f"provider {name!r}: unknown settings: {', '.join(unknown)}")
        self.name = name
        self.kind = kind
        self.endpoints = _ENDPOINTS[kind]
        self._auth: dict[str, str] = {k: v for k, v in extra.items() if v}
        if api_base:
            self._auth["api_base"] = api_base
        if api_key:
            self._auth["api_key"] = api_key
        keys = [api_key, *(v for k, v in extra.items() if k in _AWS_SECRETS)]
        self._secrets = redaction_secrets((*keys, *secrets))
        # Made on first call, inside the running loop; released by close().
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None
        self._upstreams = upstreams
        self._client: Any = None

    def __repr__(self) -> str:  # never show keys
        return f"LitellmProvider(name={self.name!r}, kind={self.kind!r})"

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        call = await text_inputs(call, self.kind)  # token ids as text; a prompt batch refused
        kwargs = self._arguments(call, is_stream=False)
        sent = _sending()
        try:
            result = await _invoke(call.endpoint, kwargs)
        except Exception as exc:
            raise translate_error(exc, secrets=self._secrets, was_sent=sent.is_sent) from None
        body = openai_fields(call.endpoint, _dump(result), is_chunk=False)
        if call.endpoint == "embeddings" and self.kind == "gemini":
            # batchEmbedContents answers with no usage; litellm's is its own count of the
            # inputs joined into one text (100 x "x": 13). Without one, the gateway counts
            # each input itself and books the tokens as estimated.
            body.pop("usage", None)
        if call.endpoint == "embeddings" and call.body.get("encoding_format") == "base64":
            _encode_embeddings_base64(body)
        return UpstreamReply(body=orjson.dumps(body))

    async def open_stream(self, call: UpstreamCall) -> AsyncIterator[bytes]:
        if call.endpoint == "embeddings":
            raise UpstreamClientError(400, "Embeddings cannot be streamed.", param="stream")
        call = await text_inputs(call, self.kind)
        kwargs = self._arguments(call, is_stream=True)
        sent = _sending()
        try:
            stream = await _invoke(call.endpoint, kwargs)
        except Exception as exc:
            raise translate_error(exc, secrets=self._secrets, was_sent=sent.is_sent) from None
        # Gemini sends its request only when the first chunk is asked for: pull
        # it here so a refusal raises now, before any byte reaches the client.
        try:
            held, first = await _first_said(stream)
        except BaseException as exc:
            await _close_stream(stream)
            if isinstance(exc, Exception):
                raise translate_error(exc, secrets=self._secrets, was_sent=sent.is_sent) from None
            raise
        if first is None:  # before the first byte: fail over, as the openai types do
            await _close_stream(stream)
            raise UpstreamFailure(f"{self.name}: stream ended before its first event")
        if held and is_error_event(_dump(first), b""):
            held = []  # nothing to the client before it: the attempt fails (the relay's rule)
        return _SseRelay(stream, first, self._secrets, call.endpoint, held=held)

    async def close(self) -> None:
        client, session, resolver = self._client, self._session, self._resolver
        self._client = self._session = self._resolver = None
        if client is not None:
            await client.close()
        if session is not None:
            await session.close()
        if resolver is not None:  # a resolver handed to a connector is not its to close
            await resolver.close()

    def _arguments(self, call: UpstreamCall, *, is_stream: bool) -> dict[str, Any]:
        if call.endpoint not in self.endpoints:
            raise UpstreamClientError(
                400,
                f"This model does not serve the {call.endpoint} endpoint.",
                code="unsupported_endpoint",
            )
        allowed = _PARAMS[call.endpoint]
        kwargs = {k: v for k, v in call.body.items() if k in allowed and v is not None}
        self._refuse_linked_media(kwargs)
        self._refuse_what_would_be_dropped(call, kwargs)
        # Anthropic requires a cap; OpenAI callers may send none. litellm would fill
        # in its own (up to 128,000, beyond many models' limit: a 400).
        uncapped = "max_tokens" not in kwargs and "max_completion_tokens" not in kwargs
        if self.kind == "anthropic" and call.endpoint != "embeddings" and uncapped:
            kwargs["max_tokens"] = ANTHROPIC_DEFAULT_MAX_TOKENS
        kwargs.update(self._auth)
        kwargs.update(
            model=self._route(call),
            client=self._http_client(),
            drop_params=True,
            max_retries=0,
            num_retries=0,
        )
        if is_stream:  # always ask for usage: the gateway bills from it
            kwargs.update(stream=True, stream_options={"include_usage": True})
        trace: dict[str, str] = {}
        add_trace_headers(trace)  # our traceparent, when this request is traced
        if trace:  # (a caller's body cannot set extra_headers: not in _PARAMS)
            kwargs["extra_headers"] = trace
        return kwargs

    def _refuse_linked_media(self, kwargs: Mapping[str, Any]) -> None:
        """litellm would fetch a linked image or file from the gateway (media_links.py):
        anything but inline data is refused before anything is fetched or sent."""
        is_anthropic = self.kind == "anthropic"  # its Files API ids go on as ids
        param = linked_media(kwargs.get("messages"), accepts_file_ids=is_anthropic)
        if param is not None:
            raise UpstreamClientError(
                400,
                f"This model's provider ({self.kind}) takes images, files and audio inline "
                f"only: send {param} as a data: URL (data:<mime>;base64,<data>), not a link "
                "or anything else. The gateway fetches nothing a request links to.",
                type_="invalid_request_error",
                param=param,
            )

    def _refuse_what_would_be_dropped(self, call: UpstreamCall, kwargs: Mapping[str, Any]) -> None:
        """`drop_params` silently drops what a provider lacks; for `n` that would answer
        a request for several choices with one, so it is refused instead."""
        n = kwargs.get("n", 1)
        if n == 1 or call.endpoint == "embeddings":
            return
        supported = _litellm().get_supported_openai_params(
            model=call.model, custom_llm_provider=self.kind
        )
        if "n" not in (supported or ()):
            raise UpstreamClientError(
                400,
                f"This model's provider ({self.kind}) returns one choice per request; "
                "send n=1, or make several requests.",
                param="n",
            )

    def _route(self, call: UpstreamCall) -> str:
        if self.kind == "bedrock" and call.endpoint != "embeddings":
            # Converse is the one Bedrock chat API that every text model speaks.
            return f"bedrock/converse/{call.model.removeprefix('converse/')}"
        return f"{self.kind}/{call.model}"

    def _http_client(self) -> Any:
        if self._client is None:
            custom_httpx = _litellm().llms.custom_httpx
            # litellm's calls (Anthropic, Gemini, Bedrock, an api_base) go through this
            # session, so their addresses obey the upstream rules at connect time: a name's
            # through the resolver, an IP address's through the trace.
            self._resolver = GuardedResolver(self._upstreams)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=self._resolver),
                trace_configs=[guarded_trace(self._upstreams)],
            )
            # Handed over as the transport, not as a shared session: litellm then builds no
            # client of its own (it would, without these rules, to retry a refused connect).
            transport = custom_httpx.aiohttp_transport.LiteLLMAiohttpTransport(
                client=self._session,
                ssl_verify=_ssl_option(custom_httpx.http_handler.get_ssl_configuration()),
                owns_session=False,
                session_factory=_no_other_session,
            )
            self._client = custom_httpx.http_handler.AsyncHTTPHandler(
                transport=transport,
                follow_redirects=False,
                event_hooks={"request": [_mark_sent], "response": [_refuse_redirect]},
            )
        return self._client


class _Redirected(Exception):
    """An upstream answered a redirect: a failed attempt, never followed (its Location may
    name any host, and the key would go with the request)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}: a redirect, not followed")
        self.status = status


class _Sending:
    """Whether a litellm call has sent a request upstream."""

    __slots__ = ("is_sent",)

    def __init__(self) -> None:
        self.is_sent = False


def _sending() -> _Sending:
    """Marks what the calling task's litellm call does upstream from now on (`_SENT`)."""
    sending = _Sending()
    _SENT.set(sending)
    return sending


async def _mark_sent(request: Any) -> None:
    """httpx's request hook: the running call reached the upstream."""
    sending = _SENT.get()
    if sending is not None:
        sending.is_sent = True


async def _refuse_redirect(response: Any) -> None:
    """httpx's response hook: a 3xx ends the attempt, whatever a litellm call asked for."""
    if 300 <= response.status_code < 400:
        raise _Redirected(response.status_code)


def _no_other_session() -> aiohttp.ClientSession:
    # litellm asks for a new session when its own is closed or on another loop: a request
    # racing close(). It gets none without the upstream rules; the attempt fails.
    raise RuntimeError("this provider's HTTP session is closed")


def _ssl_option(config: object) -> ssl.SSLContext | bool | None:
    """litellm's TLS settings (its CA bundle, `SSL_CERT_FILE`) as its own clients apply them."""
    if isinstance(config, ssl.SSLContext) or config is False:
        return config
    return None


async def _invoke(endpoint: Endpoint, kwargs: dict[str, Any]) -> Any:
    litellm = _litellm()
    if endpoint == "embeddings":
        token = _CALL_CLIENT.set(kwargs["client"])
        try:
            return await litellm.aembedding(**kwargs)
        finally:
            _CALL_CLIENT.reset(token)
    if endpoint == "completions":
        return await litellm.atext_completion(**kwargs)
    return await litellm.acompletion(**kwargs)


async def _first_said(stream: Any) -> tuple[list[Any], Any]:
    """The chunks before the stream's first that carries something the upstream said, and
    that one (None when the stream ended first). litellm makes an empty `stop` chunk of a
    200 with no event it could read (stream_start.says_nothing). At most EMPTY_CHUNKS_HELD
    are held: past that the stream is passed on as it is."""
    held: list[Any] = []
    while len(held) < EMPTY_CHUNKS_HELD:
        try:
            chunk = await anext(stream)
        except StopAsyncIteration:
            return held, None
        if not says_nothing(_dump(chunk)):
            return held, chunk
        held.append(chunk)
    return held[:-1], held[-1]


async def _close_stream(stream: Any) -> None:
    # A text-completion stream wraps a chat stream and has no aclose of its own.
    inner = stream if hasattr(stream, "aclose") else stream.completion_stream
    await inner.aclose()


class _SseRelay:
    """Each litellm chunk as one SSE event, then `[DONE]`; closes litellm's stream.

    A chunk that is an error event (the SDK's rule: a truthy `error`, or `type` error) is
    handled as the openai-compatible provider handles one: first, it fails the attempt
    (the request fails over); later, it is relayed cleaned of our keys and URLs, and the
    stream ends there as the upstream's failure (no second error event)."""

    def __init__(
        self,
        stream: Any,
        first: Any,
        secrets: tuple[str, ...],
        endpoint: Endpoint = "chat",
        *,
        held: Sequence[Any] = (),
    ) -> None:
        """`held`: chunks carrying nothing that came before `first` (`_first_said`), relayed
        first as they came."""
        self._stream = stream
        self._held = list(held)
        self._endpoint = endpoint
        self._first = first
        self._secrets = secrets
        self._spellings = secret_spellings(secrets)
        self._id: object = None
        self._is_exhausted = first is None
        self._is_closed = False
        self._failed = False  # its error event went out: the stream ends at the next read

    def __aiter__(self) -> _SseRelay:
        return self

    async def __anext__(self) -> bytes:
        if self._failed:
            self._failed = False
            await self.aclose()
            raise UpstreamFailure("stream ended on its error", told_client=True)
        if self._is_closed:
            raise StopAsyncIteration
        if self._held:
            return self._event(self._held.pop(0))
        if self._first is not None:
            chunk, self._first = self._first, None
            event = self._event(chunk)
            if self._failed:  # nothing reached the client yet: a failed attempt
                self._failed = False
                await self.aclose()
                raise UpstreamFailure("stream began with an error event")
            return event
        if self._is_exhausted:
            await self.aclose()
            return _DONE
        try:
            chunk = await anext(self._stream)
        except StopAsyncIteration:
            await self.aclose()
            return _DONE
        except BaseException as exc:
            # Broken or cancelled mid-stream: release the connection first.
            await self.aclose()
            if isinstance(exc, Exception):
                raise _mid_stream_failure(exc, self._secrets) from None
            raise
        return self._event(chunk)

    async def aclose(self) -> None:
        if not self._is_closed:
            self._is_closed = True
            self._first = None
            self._held.clear()
            await _close_stream(self._stream)

    def _event(self, chunk: Any) -> bytes:
        body = openai_fields(self._endpoint, _dump(chunk), is_chunk=True)
        # litellm may mint a new id per chunk (Gemini); OpenAI keeps one per stream.
        if self._id is None:
            self._id = body.get("id")
        elif body.get("id") is not None:
            body["id"] = self._id
        event = b"data: " + orjson.dumps(body) + b"\n\n"
        if is_error_event(body, event):
            self._failed = True
            return redact_error_events(event, self._spellings)
        return event


def _mid_stream_failure(exc: Exception, secrets: tuple[str, ...]) -> UpstreamFailure:
    # Once bytes have gone out nothing is passed back as the caller's 4xx.
    error = translate_error(exc, secrets=secrets)
    if isinstance(error, UpstreamFailure):
        return error
    kind = (
        f" (type={error.type})" if error.type else ""
    )  # never its message: it may quote the prompt
    return UpstreamFailure(f"mid-stream error: HTTP {error.status}{kind}", status=error.status)


def translate_error(
    exc: Exception, *, secrets: tuple[str, ...] = (), was_sent: bool = True
) -> UpstreamFailure | UpstreamClientError:
    """Map a litellm (or transport) exception to the gateway's two upstream errors.

    Decided by status: 429, 5xx, 3xx (a redirect, never followed), 401/402/403 (our
    key or account), 404, 408 and transport failures are worth failing over; other
    4xx are the caller's request, passed back from the upstream's error body
    (litellm keeps it at the end of its message) with URLs, keys and litellm's
    prefixes removed.

    `was_sent` False (no request went upstream): a value litellm could not convert for
    the provider (its ValueError, TypeError, KeyError or own BadRequestError, which it
    may wrap as a connection error) is the caller's 400, not a failed attempt.
    """
    litellm = _litellm()
    import httpx

    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    redirected = _transport_cause(exc, _Redirected)
    if isinstance(redirected, _Redirected):  # never its Location: it may hold a token
        return UpstreamFailure(str(redirected), status=redirected.status)
    # Whatever litellm made of it (a 500 of its own, for a refusal before connecting).
    refused = _transport_cause(exc, UpstreamRefused)
    if isinstance(refused, UpstreamRefused):  # the rules' reason: hosts and addresses only
        return UpstreamFailure(f"not connected: {refused.reason}", status=None)
    transport = _transport_cause(exc, httpx.TransportError)
    # The detail goes to the operator's log: what failed, the status and the error's type,
    # never the upstream's message (litellm's own text holds it), which may echo the prompt.
    kinds = type(exc).__name__ + (f" ({type(transport).__name__})" if transport else "")
    if isinstance(exc, litellm.Timeout) or isinstance(transport, httpx.TimeoutException):
        return UpstreamFailure(kinds, status=None if transport else status, is_timeout=True)
    unconverted = None if was_sent or transport else _input_error(exc, litellm)
    if unconverted is not None:  # its own words: litellm's wrapper adds a bug-report link
        return _client_error(unconverted, 400, {}, secrets, litellm)
    error = _error_object(getattr(exc, "body", None), str(getattr(exc, "message", "")))
    # A 3xx (a redirect, never followed) fails the attempt, as a 5xx does.
    if status is not None and 400 <= status < 500 and status not in _FAILOVER_STATUSES:
        return _client_error(exc, status, error, secrets, litellm)
    if transport is not None or isinstance(exc, litellm.APIConnectionError) or status is None:
        return UpstreamFailure(kinds, status=None)  # no HTTP answer to speak of
    headers = getattr(exc, "litellm_response_headers", None)
    retry_after_s = retry_after_seconds(headers) or _retry_delay_s(error)
    summary = error_summary(error, secrets, ("type", "code", "status"))  # Gemini: `status`
    detail = f"{kinds}: HTTP {status}{summary}"
    return UpstreamFailure(detail, status=status, retry_after_s=retry_after_s)


def _client_error(
    exc: BaseException,
    status: int,
    error: Mapping[str, Any],
    secrets: tuple[str, ...],
    litellm: Any,
) -> UpstreamClientError:
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = _PREFIX.sub("", str(getattr(exc, "message", exc)), count=1)
    message = " ".join(_scrub(caller_message(message), secrets, keep_urls=False).split())
    return UpstreamClientError(
        status,
        message or "The upstream rejected the request.",
        type_="invalid_request_error",
        param=_text_or_none(error.get("param")),
        code=_text_or_none(error.get("code")) or _litellm_code(exc, litellm),
    )


def _input_error(exc: Exception, litellm: Any) -> BaseException | None:
    """The error litellm raised converting the request (before sending it), if it is one."""
    return _transport_cause(exc, (ValueError, TypeError, KeyError, litellm.BadRequestError))


def _transport_cause(
    exc: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]
) -> BaseException | None:
    """The transport error (connect, read, timeout) litellm wrapped, if any."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, kind):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _error_object(body: object, message: str) -> dict[str, Any]:
    """The upstream's `error` object (OpenAI, Anthropic, Gemini) or body (Bedrock), else {}.

    litellm sets `body` for OpenAI-style upstreams only; for these providers the
    upstream's JSON body is the tail of its message, after "XException - ".
    """
    if not isinstance(body, dict):
        tail = _PREFIX.sub("", message, count=1).strip()
        if tail[:2] in ("b'", 'b"'):  # a bytes repr, from streaming requests
            tail = tail[2:-1]
        try:
            # litellm may add its own words after the body (". Handle with `litellm.X`").
            body = orjson.loads(tail[: tail.rfind("}") + 1] or tail)
        except orjson.JSONDecodeError:
            return {}
    if not isinstance(body, dict):
        return {}
    error = body.get("error", body)
    if isinstance(error, str):
        return {"message": error}
    return error if isinstance(error, dict) else {}


def _retry_delay_s(error: Mapping[str, Any]) -> float | None:
    # Gemini sends no retry-after header; its 429 body carries RetryInfo "37s".
    for detail in error.get("details") or ():
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(float(delay[:-1]), 0.0)
            except ValueError:
                return None
    return None


def _scrub(text: str, secrets: tuple[str, ...], *, keep_urls: bool) -> str:
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    if "****" in text:  # a key the upstream masked for display: head and tail are ours
        text = MASKED_KEY.sub("[redacted]", text)
    text = _KEY_SHAPES.sub("[redacted]", text)
    return text if keep_urls else _URL.sub("[url]", text)


def _litellm_code(exc: BaseException, litellm: Any) -> str | None:
    if isinstance(exc, litellm.ContextWindowExceededError):
        return "context_length_exceeded"
    if isinstance(exc, litellm.ContentPolicyViolationError):
        return "content_policy_violation"
    return None


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _dump(result: Any) -> dict[str, Any]:
    # warnings=False: litellm's models trip pydantic's serializer type warnings.
    body: dict[str, Any] = result.model_dump(mode="json", warnings=False)
    return body


def _encode_embeddings_base64(body: dict[str, Any]) -> None:
    """What OpenAI sends for encoding_format=base64: little-endian float32 bytes."""
    for item in body.get("data") or ():
        vector = item.get("embedding")
        if isinstance(vector, list):
            packed = struct.pack(f"<{len(vector)}f", *vector)
            item["embedding"] = base64.b64encode(packed).decode("ascii")
