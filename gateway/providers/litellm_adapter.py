"""Anthropic, Gemini and Bedrock upstreams, translated by litellm.

Owns: turning an `UpstreamCall` into litellm's `acompletion` / `atext_completion` /
`aembedding` arguments and rendering the result as OpenAI JSON or SSE event bytes
(OpenAI's fields only: litellm_fields.py). litellm is imported lazily, and its
requests kept on the provider's session, by litellm_http.py; its exceptions are
mapped, once, into `UpstreamFailure` / `UpstreamClientError` by litellm_errors.py.

Must not: import litellm at module import, retry (the failover loop does),
log or echo a key, or let a litellm exception escape. Only the OpenAI request
fields listed below reach litellm: its other keyword arguments (`api_base`,
`mock_response`, `aws_sts_endpoint`, ...) must never be settable from a body.
Nor may litellm connect anywhere but through this provider's own session (the
upstream rules, no redirect followed: `_http_client`), or fetch a link a
request names (media_links.py). Nor may litellm take a credential from the
gateway's environment (ANTHROPIC_API_KEY, GEMINI_API_KEY, AWS_*): every call carries
the provider's own (`_credentials`, `_sign_with_given_keys_only`).
"""

from __future__ import annotations

import base64
import functools
import importlib
import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

import aiohttp
import orjson

from gateway.policy.compiled import KEYED_TYPES, is_bedrock_endpoint
from gateway.policy.secrets import redaction_secrets
from gateway.policy.upstreams import DEFAULT_RULES, UpstreamRules
from gateway.providers.base import (
    DONE_EVENT,
    Endpoint,
    UpstreamCall,
    UpstreamClientError,
    UpstreamFailure,
    UpstreamReply,
)
from gateway.providers.litellm_errors import mid_stream_failure, translate_error
from gateway.providers.litellm_fields import openai_fields
from gateway.providers.litellm_http import (
    CALL_CLIENT,
    gemini_saw_finish,
    litellm_module,
    mark_sent,
    no_other_session,
    refuse_redirect,
    sending,
    ssl_option,
)
from gateway.providers.litellm_input import text_inputs
from gateway.providers.media_links import linked_media
from gateway.providers.redaction import redact_error_events, secret_spellings
from gateway.providers.resolver import GuardedResolver, guarded_trace
from gateway.providers.stream_start import says_nothing
from gateway.providers.upstream_connections import GuardedConnector
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

# The reply cap sent to Anthropic when the caller gives none (it requires one):
# the figure litellm long used, within every Claude model's output limit.
ANTHROPIC_DEFAULT_MAX_TOKENS = 4096


def thinking_budget(reasoning_effort: object) -> int:
    """The thinking tokens litellm asks Anthropic for at this `reasoning_effort` (its
    DEFAULT_REASONING_EFFORT_<EFFORT>_THINKING_BUDGET: 1024 low … 16384 max); 0 for none,
    or an effort it has no budget for."""
    if not isinstance(reasoning_effort, str) or not reasoning_effort.isalpha():
        return 0
    constants = litellm_module().constants
    name = f"DEFAULT_REASONING_EFFORT_{reasoning_effort.upper()}_THINKING_BUDGET"
    budget = getattr(constants, name, 0)
    return budget if type(budget) is int and budget > 0 else 0


# Chunks carrying nothing held before a stream's first real one (`_first_said`): litellm
# makes two of a 200 without events (the `stop`, its usage); a real stream's first has its role.
EMPTY_CHUNKS_HELD = 8
_DONE = DONE_EVENT  # an EndsWithDone: the relay settles the limits before it goes out


class LitellmProvider:
    """One Anthropic, Gemini or Bedrock deployment behind the `Provider` interface.

    `extra` may carry `aws_region_name`, `aws_access_key_id`,
    `aws_secret_access_key` and `aws_session_token` (Bedrock), already
    resolved; any other key is a configuration error (ValueError), as are credentials
    that would leave litellm to find the rest in the environment (`_credentials`).
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
        self._auth = _credentials(name, kind, api_base, api_key, extra)
        self._has_aws_keys = "aws_access_key_id" in self._auth
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
        sent = sending()
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
        sent = sending()
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
            # Above the thinking budget litellm maps a `reasoning_effort` to: Anthropic
            # refuses a cap at or under it (probe p24: `high` was always a 400).
            thinking = thinking_budget(kwargs.get("reasoning_effort"))
            kwargs["max_tokens"] = ANTHROPIC_DEFAULT_MAX_TOKENS + thinking
        kwargs.update(self._auth)
        if self._has_aws_keys:
            _sign_with_given_keys_only()
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
        supported = litellm_module().get_supported_openai_params(
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
            custom_httpx = litellm_module().llms.custom_httpx
            # litellm's calls (Anthropic, Gemini, Bedrock, an api_base) go through this
            # session, so their addresses obey the upstream rules at connect time: a name's
            # through the resolver, an IP address's through the trace.
            self._resolver = GuardedResolver(self._upstreams)
            self._session = aiohttp.ClientSession(
                connector=GuardedConnector(resolver=self._resolver),
                trace_configs=[guarded_trace(self._upstreams)],
            )
            # Handed over as the transport, not as a shared session: litellm then builds no
            # client of its own (it would, without these rules, to retry a refused connect).
            transport = custom_httpx.aiohttp_transport.LiteLLMAiohttpTransport(
                client=self._session,
                ssl_verify=ssl_option(custom_httpx.http_handler.get_ssl_configuration()),
                owns_session=False,
                session_factory=no_other_session,
            )
            self._client = custom_httpx.http_handler.AsyncHTTPHandler(
                transport=transport,
                follow_redirects=False,
                event_hooks={"request": [mark_sent], "response": [refuse_redirect]},
            )
        return self._client


def _credentials(
    name: str, kind: Kind, api_base: str | None, api_key: str | None, extra: Mapping[str, str]
) -> dict[str, str]:
    """litellm's credential arguments: the provider's own, never None where litellm would
    read the environment instead (SPEC §1; the policy refuses the same cases, compiled.py).

    anthropic and gemini need a key (else ANTHROPIC_API_KEY, GEMINI_API_KEY, GOOGLE_API_KEY,
    ANTHROPIC_AUTH_TOKEN); Bedrock's `api_key` is "" when unset (else AWS_BEARER_TOKEN_BEDROCK
    as a bearer token), its AWS keys come as a pair, and with none at all it signs with the
    gateway's own identity (boto3's chain), so it may call Bedrock's own hosts only."""
    auth = {k: v for k, v in extra.items() if v}
    if kind in KEYED_TYPES and not (api_key or "").strip():
        raise ValueError(f"provider {name!r}: type {kind} needs an api_key")
    has_pair = [k in auth for k in ("aws_access_key_id", "aws_secret_access_key")]
    if any(has_pair) and not all(has_pair):
        raise ValueError(f"provider {name!r}: AWS keys come as a pair (id and secret)")
    if kind == "bedrock" and not (api_key or any(has_pair) or is_bedrock_endpoint(api_base)):
        raise ValueError(f"provider {name!r}: without keys, only a Bedrock endpoint")
    if api_base:
        auth["api_base"] = api_base
    auth["api_key"] = api_key or ""
    return auth


@functools.cache
def _sign_with_given_keys_only() -> None:
    """Teach litellm that the AWS keys a call gives are the whole credential.

    Its `get_credentials` fills every parameter left None from the process environment
    (AWS_SESSION_TOKEN, sent along; AWS_ROLE_NAME, AWS_WEB_IDENTITY_TOKEN, AWS_PROFILE_NAME,
    each switching to a flow that wins over the keys), and "" is no way out: an empty role
    name starts a role flow too. Given both keys it now returns exactly them; given none it
    keeps litellm's ambient chain (a keyless provider, allowed toward Bedrock only).
    Installed once, on the first call of a provider with keys; this process calls litellm
    from this module only (the TID251 ban)."""
    litellm_module()  # imported offline first
    from botocore.credentials import Credentials

    aws = importlib.import_module("litellm.llms.bedrock.base_aws_llm").BaseAWSLLM
    ambient = aws.get_credentials

    def given_keys_only(
        self: Any,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if aws_access_key_id and aws_secret_access_key:
            return Credentials(aws_access_key_id, aws_secret_access_key, aws_session_token or None)
        keys = (aws_access_key_id, aws_secret_access_key, aws_session_token)
        return ambient(self, *keys, *args, **kwargs)

    aws.get_credentials = given_keys_only


async def _invoke(endpoint: Endpoint, kwargs: dict[str, Any]) -> Any:
    litellm = litellm_module()
    if endpoint == "embeddings":
        token = CALL_CLIENT.set(kwargs["client"])
        try:
            return await litellm.aembedding(**kwargs)
        finally:
            CALL_CLIENT.reset(token)
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
                raise mid_stream_failure(exc, self._secrets) from None
            raise
        try:
            return self._event(chunk)
        except UpstreamFailure:  # a Gemini stream cut short (_event): release it first
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if not self._is_closed:
            self._is_closed = True
            self._first = None
            self._held.clear()
            await _close_stream(self._stream)

    def _event(self, chunk: Any) -> bytes:
        body = openai_fields(self._endpoint, _dump(chunk), is_chunk=True)
        if _finishes(body) and gemini_saw_finish(self._stream) is False:
            # litellm's made-up `stop` at a Gemini stream cut short: the attempt failed.
            raise UpstreamFailure("stream ended before its finishReason")
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


def _finishes(body: Mapping[str, Any]) -> bool:
    """Does this chunk finish a choice (a `finish_reason` on any of them)?"""
    choices = body.get("choices")
    return type(choices) is list and any(
        type(choice) is dict and choice.get("finish_reason") is not None for choice in choices
    )


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
