"""The one small interface every provider implements, and the values it trades.

A provider turns an `UpstreamCall` (an OpenAI-shaped request body whose `model`
is already the upstream model) into an OpenAI-shaped reply: JSON bytes, or a
stream of complete SSE events (`b"data: {...}\\n\\n"`, ending with
`b"data: [DONE]\\n\\n"`). It translates its library's errors once, into
`UpstreamFailure` (worth failing over) or `UpstreamClientError` (the caller's
own bad request, passed back). Timeouts are the failover loop's job: it wraps
each attempt in a deadline and cancels; a provider must release its connection
when cancelled or when its stream is closed early.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol

Endpoint = Literal["chat", "completions", "embeddings", "responses"]

# A key an upstream masked for display ("Incorrect API key provided: sk-secre****-123"):
# its visible head and tail are still our key's, so providers redact the whole run.
MASKED_KEY = re.compile(r"[\w\-]*\*{4,}[\w\-]*")


class EndsWithDone(bytes):
    """A chunk of a chat or completions stream whose last event is its `[DONE]`, as a
    provider yields it: the relay knows the end by the chunk's type (no bytes search per
    chunk) and settles the request's limits before its client sees it (stream/relay.py)."""

    __slots__ = ()


DONE_EVENT = EndsWithDone(b"data: [DONE]\n\n")


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    endpoint: Endpoint
    body: dict[str, Any]  # OpenAI wire body; `model` is the upstream model
    model: str
    is_stream: bool
    request_id: str


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    body: bytes  # OpenAI-shaped JSON of the whole response
    status: int = 200


class UpstreamFailure(Exception):
    """The deployment failed in a way another deployment might not: fail over.

    `detail` is for logs only (it may hold a provider URL); callers see a
    generic message.
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        is_timeout: bool = False,
        told_client: bool = False,
        after: bytes = b"",
        is_request_sized: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.retry_after_s = retry_after_s
        self.is_timeout = is_timeout
        # The deployment refused this request for its size (OpenAI's 429 "Request too
        # large … Limit N, Requested M"): another deployment may take it, but it says
        # nothing of the deployment's health, so it cools nothing down for other callers.
        self.is_request_sized = is_request_sized
        # A stream's own error event already went to the client: no second one.
        self.told_client = told_client
        # What the upstream reported after that error event, in the same read (its usage
        # chunk): never relayed (the SDK stops at the error), only learned from.
        self.after = after


class UpstreamClientError(Exception):
    """The upstream refused the caller's request itself (a 4xx): do not fail over.

    Fields are already cleaned of provider URLs and keys.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code


class Provider(Protocol):
    """One configured upstream (a `providers:` entry of the policy)."""

    name: str
    endpoints: frozenset[Endpoint]  # what it can serve; others are refused before routing

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        """A whole non-streamed response, or raise UpstreamFailure/UpstreamClientError."""
        ...

    async def open_stream(self, call: UpstreamCall) -> AsyncIterator[bytes]:
        """Start a stream: returns once the upstream accepted it (status 200).

        The iterator yields complete SSE events; closing it (aclose) or
        cancelling releases the upstream connection at once. Errors after the
        start are raised from the iterator as UpstreamFailure.
        """
        ...

    async def close(self) -> None: ...


# The upstream's own id of the request that answered (OpenAI's `x-request-id`, `req_…`),
# returned as `x-upstream-request-id` (REFERENCE.md §1.4). A provider notes it as its
# response arrives, in the request's task; the pipeline reads it for the deployment that
# answered. Keyed by the provider's name: an earlier attempt's id is never another's.
UPSTREAM_REQUEST_ID: ContextVar[tuple[str, bytes] | None] = ContextVar(
    "upstream_request_id", default=None
)
UPSTREAM_REQUEST_ID_MAX = 200  # characters; a longer one is dropped, never cut


def note_upstream_request_id(provider: str, value: str | None) -> None:
    """Keep an upstream response's request id: printable ASCII of at most 200 characters,
    else none (it goes into a response header as it is)."""
    if value and len(value) <= UPSTREAM_REQUEST_ID_MAX and value.isascii() and value.isprintable():
        UPSTREAM_REQUEST_ID.set((provider, value.encode("ascii")))
    elif UPSTREAM_REQUEST_ID.get() is not None:  # this response's id is none, not an earlier
        UPSTREAM_REQUEST_ID.set(None)


def upstream_request_id(provider: str) -> bytes | None:
    """The request id the answering provider's response gave, if it gave a valid one."""
    noted = UPSTREAM_REQUEST_ID.get()
    return noted[1] if noted is not None and noted[0] == provider else None


def retry_after_seconds(headers: object, now: float | None = None) -> float | None:
    """How long an upstream asks us to wait: `retry-after-ms`, else `retry-after` as
    delta-seconds or an HTTP-date (RFC 9110 §10.2.3); None when it says nothing usable."""
    items = getattr(headers, "items", None)
    if items is None:
        return None
    lowered = {str(k).lower(): str(v) for k, v in items()}
    for name, per_second in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(name)
        if not value:
            continue
        try:
            return max(float(value) / per_second, 0.0)
        except ValueError:
            pass
        if name == "retry-after":
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            current = time.time() if now is None else now
            return max(when.timestamp() - current, 0.0)
    return None
