"""Pass-through to OpenAI-wire upstreams: OpenAI, Azure OpenAI, vLLM, Ollama, any `/v1`.

One pooled aiohttp session per provider. The URL is built only from the
policy (base URL, fixed path, the deployment's model): nothing in a client's
request can point it elsewhere, and the addresses its host resolves to obey the
upstream rules at connect time (`resolver.py`). The caller's headers are never forwarded; the
provider's own key is added here. Streams are relayed as chunks of complete SSE
events (all that one read completed), without re-encoding, up to the upstream's first
failure event: the upstream is cut there.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver

from gateway.policy.compiled import ProviderConfig
from gateway.providers.base import (
    DONE_EVENT,
    Endpoint,
    EndsWithDone,
    UpstreamCall,
    UpstreamClientError,
    UpstreamFailure,
    UpstreamReply,
    note_upstream_request_id,
    retry_after_seconds,
)
from gateway.providers.error_answer import (
    error_of,
    error_summary,
    is_error_answer,
    may_hold_error,
)
from gateway.providers.error_shape import error_fields_of, is_request_too_large
from gateway.providers.framing import (
    EVENT_STREAM,
    JSON_TYPES,
    is_convertible,
    stream_of_whole,
    whole_of_stream,
)
from gateway.providers.redaction import (
    ERROR_KEY,
    INCOMPLETE_KEY,
    clean_error_of,
    clean_message,
    redact_error_events,
    secret_spellings,
)
from gateway.providers.resolver import GuardedResolver, refusal_of
from gateway.providers.stream_end import expected_choices, finished_choices, responses_ended
from gateway.providers.stream_start import (
    OBJECT_CLOSES,
    OBJECT_OPENS,
    failed_start,
    readable_part,
)
from gateway.providers.upstream_connections import (
    GuardedConnector,
    read_answer_bytes,
    transport_failure,
)
from gateway.sse import (
    DONE_PAYLOAD,
    EventSplitter,
    end_of_done,
    end_of_failure,
    events_of,
    from_first_data,
)
from gateway.telemetry.current import add_trace_headers

OPENAI_API_BASE = "https://api.openai.com/v1"
USER_AGENT = "llm-gateway"
PATHS: dict[Endpoint, str] = {
    "chat": "chat/completions",
    "completions": "completions",
    "embeddings": "embeddings",
    "responses": "responses",
}
# Statuses that say "this deployment, now" rather than "this request": fail over.
# 402: our account with the upstream is out of credit (as litellm_errors.py has it).
FAILOVER_STATUSES = frozenset({401, 402, 403, 408, 409, 425, 429})
TOO_MANY_REQUESTS = 429
# The upstream has no such model or deployment (retired, misnamed; Azure's
# DeploymentNotFound): the deployment's fault, not the caller's, unless the request
# names a stored object of the caller's (`is_about_callers_object`).
NOT_FOUND = 404
ERROR_BODY_LIMIT = 64 * 1024
# A Responses stream has no [DONE]: it is complete when the upstream closes after one of
# these (the JSON `type`, with or without a space, or the SSE `event:` line).
RESPONSES_ENDED = re.compile(
    rb'"type": ?"response\.(?:completed|failed|incomplete)"'
    rb"|event: response\.(?:completed|failed|incomplete)\n"
)
# A chat or completions answer is whole once a choice has finished: an upstream that
# then closes without `[DONE]` (some servers never send it) ended well, and the client
# gets the `[DONE]` OpenAI would have sent.
NEWLINE = 10  # b"\n" as an int: bytes.find of one byte is a memchr
CHOICE_FINISHED = re.compile(rb'"finish_reason": ?"')
# Both are looked for at the close only, in the last chunks with data before it (comments,
# keep-alives, are not kept: any number may follow the end): nothing per chunk.
ENDING_CHUNKS = 8
# How a chunk ended the stream: at its `[DONE]`, at the upstream's failure event, or
# before an event the client could not parse (stream_start.readable_part).
Ending = Literal["done", "failed", "unreadable"]
# Sent for a read that held only empty `data:` keep-alives (dropped: the SDK cannot parse
# them), mid-stream: the upstream is alive, and an SSE comment says so without an event.
KEEP_ALIVE = b": keep-alive\n\n"
# An event carrying a usage report (`"usage": null` does not).
USAGE_OBJECTS = (b'"usage":{', b'"usage": {')


def usage_events(chunk: bytes) -> bytes:
    """The events of `chunk` (whole events) that carry a usage report, joined."""
    return b"".join(e for e in events_of(chunk) if any(p in e for p in USAGE_OBJECTS))


def _ended_well(
    ended: re.Pattern[bytes], recent: deque[bytes], finished: set[int], choices: int
) -> bool:
    """At the upstream's close without `[DONE]`: had the answer ended? A byte search of
    the last chunks first; then what their events say (stream_end.py). An answer of
    several choices: every one of them finished (`finished`, gathered as they came)."""
    if choices > 1:
        return len(finished & set(range(choices))) == choices
    if not any(ended.search(chunk) for chunk in recent):
        return False
    return ended is not RESPONSES_ENDED or responses_ended(recent)


def error_fields(raw: bytes) -> dict[str, Any]:
    """The `message`, `type`, `param` and `code` an upstream's 4xx body gives, in any
    of the shapes OpenAI-compatible servers use (error_shape.py); {} when it gives none."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode(errors="replace").strip()
        # Plain text is a message; an HTML error page is not.
        return {"message": text[:500]} if text and not text.startswith("<") else {}
    return error_fields_of(parsed)


async def _one_chunk(events: bytes) -> AsyncIterator[bytes]:
    yield events


def is_about_callers_object(call: UpstreamCall) -> bool:
    """Does the request name something the caller stored at this upstream (a Responses
    `previous_response_id` or `conversation`)? A 404 then means that object is gone."""
    body = call.body
    return call.endpoint == "responses" and (
        body.get("previous_response_id") is not None or body.get("conversation") is not None
    )


def is_deployment_failure(
    status: int, call: UpstreamCall, error: Mapping[str, Any] | None = None
) -> bool:
    """Is an upstream's non-2xx status this deployment's failure (fail over), rather than
    its refusal of the caller's request (passed back)? `error`: its body's fields."""
    if status in FAILOVER_STATUSES or status >= 500 or status < 400:
        return True
    return status == NOT_FOUND and not (
        is_about_callers_object(call) or _names_callers_field(error or {})
    )


# A 404 naming one of these is about the deployment's model, ours (the policy's), not the
# caller's request: OpenAI's `model_not_found`, Azure's DeploymentNotFound.
DEPLOYMENT_404_CODES = frozenset({"model_not_found", "deploymentnotfound"})


def _names_callers_field(error: Mapping[str, Any]) -> bool:
    """A 404 whose `param` names a field of the request other than `model` (OpenAI's
    `Item with id 'rs_…' not found`, param `input`; a prompt template, a vector store):
    the caller's object is missing, which no other deployment would have either."""
    param, code = error.get("param"), error.get("code")
    if isinstance(code, str) and code.lower() in DEPLOYMENT_404_CODES:
        return False
    return isinstance(param, str) and bool(param.strip()) and param.strip() != "model"


# Azure api-versions before this refuse `stream_options` ("Unrecognized request argument
# supplied"): a stream there is sent without it, and its usage counted by the gateway.
AZURE_STREAM_OPTIONS_SINCE = "2024-09-01"
_DATED_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")


def azure_takes_stream_options(api_version: str | None) -> bool:
    """Does this Azure OpenAI api-version take `stream_options`? A dated version
    (`2024-06-01`, `2024-08-01-preview`) from 2024-09-01 on; any other spelling (`v1`,
    `preview`, `latest`: the newer API) does."""
    if api_version is None or _DATED_VERSION.match(api_version) is None:
        return True
    return api_version[:10] >= AZURE_STREAM_OPTIONS_SINCE


class OpenAICompatProvider:
    def __init__(self, config: ProviderConfig, *, lookup: AbstractResolver | None = None) -> None:
        """`lookup`: the name resolver under the upstream rules (default: aiohttp's)."""
        self.name = config.name
        self._config = config
        self._is_azure = config.type == "azure"
        self._sends_stream_options = not self._is_azure or azure_takes_stream_options(
            config.api_version
        )
        self._base = (config.api_base or OPENAI_API_BASE).rstrip("/")
        # Our own user-agent: aiohttp then adds none, and skip_auto_headers (which
        # sends every request down aiohttp's slower header path) is not needed.
        self._headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        if config.api_key:
            if self._is_azure:
                self._headers["api-key"] = config.api_key
            else:
                self._headers["authorization"] = f"Bearer {config.api_key}"
        # Its key and any `${...}` value of its config (a token in api_base's path, which
        # an upstream's 404 quotes): never in a client's error or a log line.
        self._secrets = config.secrets
        self._spellings = secret_spellings(self._secrets)  # for its streams' error events
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None
        self._lookup = lookup
        self.endpoints: frozenset[Endpoint] = frozenset(PATHS)

    def _url(self, endpoint: Endpoint, model: str) -> str:
        if not self._is_azure:
            return f"{self._base}/{PATHS[endpoint]}"
        version = quote(self._config.api_version or "", safe="")
        if endpoint == "responses":
            return f"{self._base}/openai/responses?api-version={version}"
        deployment = quote(model, safe="")
        return (
            f"{self._base}/openai/deployments/{deployment}/{PATHS[endpoint]}?api-version={version}"
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Checked once per DNS cache entry, not per request (resolver.py).
            self._resolver = GuardedResolver(self._config.upstreams, lookup=self._lookup)
            self._session = aiohttp.ClientSession(
                connector=GuardedConnector(limit=0, ttl_dns_cache=300, resolver=self._resolver),
                timeout=aiohttp.ClientTimeout(total=None),  # the failover loop owns deadlines
                auto_decompress=True,
            )
        return self._session

    async def _post(self, call: UpstreamCall) -> aiohttp.ClientResponse:
        headers = {**self._headers, "x-request-id": call.request_id}
        add_trace_headers(headers)  # our traceparent, when this request is traced
        body = call.body
        if not self._sends_stream_options and "stream_options" in body:
            body = {key: value for key, value in body.items() if key != "stream_options"}
        try:
            response = await self._client().post(
                self._url(call.endpoint, call.model),
                data=orjson.dumps(body),
                headers=headers,
                allow_redirects=False,
            )
        except aiohttp.ClientError as exc:
            refused = refusal_of(exc)
            if refused is not None:  # an ordinary failed attempt (failover), with the reason
                raise UpstreamFailure(f"{self.name}: not connected: {refused}") from None
            raise UpstreamFailure(f"{self.name}: {transport_failure(exc)}") from None
        if response.status >= 300:
            try:
                await self._raise_for(response, call)
            finally:
                response.release()
        note_upstream_request_id(self.name, response.headers.get("x-request-id"))
        return response

    async def _raise_for(self, response: aiohttp.ClientResponse, call: UpstreamCall) -> None:
        status = response.status
        try:
            raw = await response.content.read(ERROR_BODY_LIMIT)
        except aiohttp.ClientError:
            raw = b""
        error = error_fields(raw)
        if is_deployment_failure(status, call, error):
            # The detail goes to the operator's log: the error's type and code, never its
            # message, which may echo the prompt (or a key) back.
            sized = status == TOO_MANY_REQUESTS and is_request_too_large(error)
            raise UpstreamFailure(
                f"{self.name}: HTTP {status}{error_summary(error, self._secrets)}"
                + (" (request too large)" if sized else ""),
                status=status,
                retry_after_s=None if sized else retry_after_seconds(response.headers),
                is_request_sized=sized,
            )
        # The caller's error is relayed: its upstream id goes with it, as an answer's does.
        note_upstream_request_id(self.name, response.headers.get("x-request-id"))
        message = error.get("message")
        if not isinstance(message, str) or not message.strip():
            message = f"The upstream refused the request (HTTP {status})."

        def field(name: str) -> str | None:
            value = error.get(name)
            return clean_message(value, self._secrets) if isinstance(value, str) else None

        raise UpstreamClientError(
            status,
            clean_message(message, self._secrets),
            type_=field("type"),
            param=field("param"),
            code=field("code"),
        )

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        response = await self._post(call)
        body = await self._body_of(response)
        if response.content_type == EVENT_STREAM and is_convertible(call.endpoint):
            try:  # a server that streams whatever was asked: the whole answer it makes
                body = whole_of_stream(call.endpoint, body)
            except ValueError as error:
                raise UpstreamFailure(f"{self.name}: whole request streamed: {error}") from None
        if may_hold_error(body):  # one byte search on every answer; rarely more
            body = self._checked(body)
        return UpstreamReply(body)

    async def _body_of(self, response: aiohttp.ClientResponse) -> bytes:
        try:
            return await read_answer_bytes(response)
        except aiohttp.ClientError as exc:
            raise UpstreamFailure(f"{self.name}: body: {type(exc).__name__}") from None
        except ValueError as exc:  # past the size any answer has: its connection goes too
            response.close()
            raise UpstreamFailure(f"{self.name}: body: {exc}") from None
        finally:
            response.release()

    def _checked(self, body: bytes) -> bytes:
        """A 200 body holding an error: a failed attempt when it is only an error (fail
        over), else the answer with its error cleaned of our key and the upstream's URL."""
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body  # the pipeline refuses what is not JSON
        if not isinstance(answer, dict):
            return body
        if not answer.get("error") and not answer.get("incomplete_details"):
            return body
        if is_error_answer(answer):
            summary = error_summary(error_of(answer), self._secrets)
            raise UpstreamFailure(f"{self.name}: HTTP 200 with an error{summary}")
        cleaned = clean_error_of(answer, self._secrets)
        return body if cleaned == answer else orjson.dumps(cleaned)

    async def open_stream(self, call: UpstreamCall) -> AsyncIterator[bytes]:
        response = await self._post(call)
        if response.content_type in JSON_TYPES and is_convertible(call.endpoint):
            # A server that ignored `stream: true`: its whole answer, as OpenAI's chunks.
            body = await self._body_of(response)
            if may_hold_error(body):
                body = self._checked(body)
            try:
                return _one_chunk(stream_of_whole(call.endpoint, body))
            except ValueError as error:
                raise UpstreamFailure(f"{self.name}: stream answered whole: {error}") from None
        if not response.content_type.startswith(EVENT_STREAM):
            response.close()
            raise UpstreamFailure(f"{self.name}: stream answered as {response.content_type}")
        if call.endpoint == "responses":
            return self._events(response, call.endpoint, ended=RESPONSES_ENDED)
        choices = expected_choices(call.endpoint, call.body)
        return self._events(
            response, call.endpoint, ended=CHOICE_FINISHED, done_at_eof=True, choices=choices
        )

    async def _events(
        self,
        response: aiohttp.ClientResponse,
        endpoint: Endpoint,
        *,
        ended: re.Pattern[bytes],
        done_at_eof: bool = False,
        choices: int = 1,
    ) -> AsyncIterator[bytes]:
        """The stream as chunks of whole SSE events, one chunk per read that completed
        any. Chat and completions streams end with `[DONE]`, or at the upstream's close
        after every choice finished (`done_at_eof`: the `[DONE]` is added; `choices`:
        how many there are); a Responses stream ends when the upstream closes after a
        terminal event (`ended`)."""
        finished = False
        recent: deque[bytes] = deque(maxlen=ENDING_CHUNKS)  # last chunks with data, newest last
        done_choices: set[int] = set()  # of an answer of several: those that finished
        splitter = EventSplitter()
        started = False
        try:
            async for data in response.content.iter_any():
                chunk = splitter.feed(data)
                if not chunk:
                    continue
                chunk, ending, after = self._read(chunk, started, endpoint)
                started = started or bool(chunk)
                if ending is not None:
                    finished = ending == "done"
                    if chunk:
                        yield EndsWithDone(chunk) if finished else chunk  # the relay settles first
                    self._raise_if_failed(ending, after)
                    return
                if chunk:
                    if chunk[:1] != b":" or b"data:" in chunk:  # not comments only
                        recent.append(chunk)
                        if choices > 1 and CHOICE_FINISHED.search(chunk):
                            done_choices |= finished_choices(chunk)
                    yield chunk
                elif started:  # only empty `data:` keep-alives: the upstream is alive
                    yield KEEP_ALIVE  # a comment, as `: ping` is (the relay's idle timer)
            tail = splitter.tail()
            if tail is not None:
                tail, ending, after = self._read(tail, started, endpoint)
                if ending is not None:
                    finished = ending == "done"
                    if tail:
                        yield EndsWithDone(tail) if finished else tail  # the relay settles first
                    self._raise_if_failed(ending, after)
                    return
                if tail:
                    if tail[:1] != b":" or b"data:" in tail:  # not comments only
                        recent.append(tail)
                        if choices > 1 and CHOICE_FINISHED.search(tail):
                            done_choices |= finished_choices(tail)
                    yield tail
            finished = _ended_well(ended, recent, done_choices, choices)
            if not finished:
                expected = "[DONE]" if done_at_eof else "a final response event"
                raise UpstreamFailure(f"{self.name}: stream ended before {expected}")
        except aiohttp.ClientError as exc:
            finished = _ended_well(ended, recent, done_choices, choices)
            if not finished:
                raise UpstreamFailure(f"{self.name}: stream broke: {type(exc).__name__}") from None
        finally:
            # Closing (not releasing) drops the connection, which is how the
            # upstream learns to stop generating when our client went away, or
            # after its own failure event.
            if finished:
                response.release()
            else:
                response.close()
        if done_at_eof:  # reached only when no [DONE] came: the answer had finished
            yield DONE_EVENT

    def _read(
        self, chunk: bytes, started: bool, endpoint: Endpoint
    ) -> tuple[bytes, Ending | None, bytes]:
        """What of `chunk` (whole events) goes to the client, whether it ends the stream
        and how, and the usage events the upstream sent after its failure event."""
        # The usual read, one JSON event on one data line (its first newline ends it: a
        # memchr), passes on three bytes checks and no call; anything else is judged
        # event by event (readable_part).
        one_object = (
            chunk.endswith(OBJECT_CLOSES)
            and chunk.startswith(OBJECT_OPENS)
            and chunk.find(NEWLINE) == len(chunk) - 2
        )
        cut = False
        if not one_object:
            chunk, cut = readable_part(chunk)
        if not started:
            # Comments before the first event (keep-alives) are not its first
            # byte: until an event comes, the request may still fail over.
            chunk = from_first_data(chunk)
            if chunk:
                self._check_start(chunk, endpoint)
            elif cut:
                raise UpstreamFailure(f"{self.name}: stream began with an event that is not JSON")
        ending: Ending | None = "unreadable" if cut else None
        after = b""
        # Bytes searches, no call, for a read that can end nothing (most); one JSON
        # object is no `[DONE]` event.
        if (
            (not one_object and DONE_PAYLOAD in chunk)
            or ERROR_KEY in chunk
            or INCOMPLETE_KEY in chunk
        ):
            chunk, found, after = self._ending_of(chunk)
            ending = found or ending
        return chunk, ending, after

    def _ending_of(self, chunk: bytes) -> tuple[bytes, Ending | None, bytes]:
        """`chunk` with its error events cleaned of our key and the upstream's URL, cut
        after its `[DONE]` or after the upstream's first failure event, whichever comes
        first, and which it was. Nothing after a failure is relayed: the SDK raises at the
        error event and reads no further, and a failed response is over. The usage events
        after a failure (in this read) are returned apart, for the books."""
        ending: Ending | None = None
        after = b""
        done_at = end_of_done(chunk)
        if done_at is not None:
            chunk, ending = chunk[:done_at], "done"
        if may_hold_error(chunk):  # bytes only; true for few chunks (a failure, an end)
            chunk = redact_error_events(chunk, self._spellings)
            failed_at = end_of_failure(chunk)
            if failed_at is not None:
                after = usage_events(chunk[failed_at:])
                chunk, ending = chunk[:failed_at], "failed"
        return chunk, ending, after

    def _raise_if_failed(self, ending: Ending, after: bytes = b"") -> None:
        """A stream cut at the upstream's failure event ends as a failed one: the client
        has the upstream's event (no second); the connection is dropped, which cancels
        the upstream's generation. One cut before an event that is not JSON ends as any
        mid-stream failure does: with the gateway's error event."""
        if ending == "failed":
            raise UpstreamFailure(
                f"{self.name}: stream ended on its error", told_client=True, after=after
            )
        if ending == "unreadable":
            raise UpstreamFailure(f"{self.name}: stream sent an event that is not JSON")

    def _check_start(self, chunk: bytes, endpoint: Endpoint) -> None:
        """A stream whose first event is an error, not JSON, or no event of `endpoint`, is
        a failed attempt: the request fails over, and the client never sees those bytes."""
        failed = failed_start(chunk, endpoint)
        if failed is not None:
            summary = error_summary(failed.error, self._secrets)
            raise UpstreamFailure(f"{self.name}: {failed.reason}{summary}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:  # a resolver handed to a connector is not its to close
            await self._resolver.close()
            self._resolver = None
