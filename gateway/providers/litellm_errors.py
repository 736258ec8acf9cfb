"""litellm's exceptions, mapped once into the gateway's two upstream errors.

A failed attempt (`UpstreamFailure`: fail over) or the caller's own 4xx
(`UpstreamClientError`: passed back, in the upstream's words with URLs, keys and
litellm's prefixes removed). The operator's log gets kinds and statuses, never an
upstream's message (it may quote the prompt).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.providers.base import (
    MASKED_KEY,
    UpstreamClientError,
    UpstreamFailure,
    retry_after_seconds,
)
from gateway.providers.error_answer import error_summary
from gateway.providers.litellm_fields import caller_message, without_prefixes
from gateway.providers.litellm_http import Redirected, litellm_module
from gateway.providers.resolver import UpstreamRefused

# Statuses below 500 that say "this deployment cannot serve now", not "bad request":
# our provider key is refused (401/403), its account is out of credit (402), it has
# no such model (404: retired or misnamed; these providers serve no Responses API,
# so no 404 is about a caller's stored object), it timed out (408) or is rate
# limited / out of quota (429).
_FAILOVER_STATUSES = frozenset({401, 402, 403, 404, 408, 429})
_URL = re.compile(r"\b(?:https?|wss?)://[^\s'\"<>]+", re.IGNORECASE)
# What litellm's code raises reading a body that is not the shape it expects.
_CONVERSION_ERRORS = (ValueError, TypeError, LookupError, AttributeError)
_KEY_SHAPES = re.compile(r"\b(?:sk-[\w-]{8,}|AIza[\w-]{20,}|(?:AKIA|ASIA)[A-Z0-9]{16})")


def mid_stream_failure(exc: Exception, secrets: tuple[str, ...]) -> UpstreamFailure:
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
    `was_sent` True, an answer litellm could not convert (no HTTP error status behind it:
    a 200 that is no answer of the provider's, which litellm calls a 422) fails the attempt.
    """
    litellm = litellm_module()
    import httpx

    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    redirected = _transport_cause(exc, Redirected)
    if isinstance(redirected, Redirected):  # never its Location: it may hold a token
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
    if was_sent and transport is None and _is_unreadable_answer(exc):
        return UpstreamFailure(f"{kinds}: an answer that could not be read", status=None)
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
        message = str(getattr(exc, "message", exc))  # caller_message cuts the prefixes
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


def _is_unreadable_answer(exc: Exception) -> bool:
    """litellm failed reading what came back, not the upstream refusing: every refusal
    (any status) carries the httpx.HTTPStatusError it was raised from; this carries the
    error litellm's conversion of a success's body raised instead."""
    import httpx

    if _transport_cause(exc, httpx.HTTPStatusError) is not None:
        return False
    return _transport_cause(exc, _CONVERSION_ERRORS) is not None


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
        tail = without_prefixes(message).strip()
        if tail[:2] in ("b'", 'b"'):  # a bytes repr, from streaming requests
            tail = bytes_repr_text(tail)
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


_REPR_END_TRIES = 4


def bytes_repr_text(text: str) -> str:
    """The text of a Python bytes repr litellm put in a streamed request's error
    (`b'{"error": {"message": "Unknown name \\"foo\\""}}'`, maybe with its own words
    after it), decoded as the upstream sent it; `text` itself when it is none."""
    end = text.rfind(text[1])
    for _ in range(_REPR_END_TRIES):  # a few of its last quotes: never a quadratic search
        if end <= 1:
            break
        try:
            value = ast.literal_eval(text[: end + 1])  # a literal only: nothing runs
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            end = text.rfind(text[1], 2, end)
            continue
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        break
    return text


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
