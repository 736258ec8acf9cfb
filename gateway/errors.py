"""One exception family for every refusal, rendered once as an OpenAI error body.

Stages raise a `GatewayError` subclass; `error_response` renders it. Messages
are written for the caller: they never carry a stack trace, a provider URL or key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson
from starlette.responses import Response

# What a message or a log line repeats of the caller's own text (a model name, a
# path, a parameter name): enough to recognise it, never a megabyte of it.
MAX_ECHOED_CHARS = 256


def cut(text: str, limit: int = MAX_ECHOED_CHARS) -> str:
    """`text`, or its first `limit` characters marked as cut with the full length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (cut, {len(text)} characters)"


def escaped(text: str) -> str:
    """`text` with each control (non-printable) character written as its escape (`\\n`,
    `\\x1b`, `\\u2028`): echoed caller input cannot break or forge a log or terminal line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def quoted(value: object, limit: int = MAX_ECHOED_CHARS) -> str:
    """Caller input quoted for a message: `'m'`, or `'aaaa…' (cut, 1048576 characters)`."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return f"'{text}'"
    return f"'{text[:limit]}…' (cut, {len(text)} characters)"


class GatewayError(Exception):
    status = 500
    type = "api_error"
    code: str | None = "internal_error"
    detail: str | None = None  # for the access line only (e.g. which claim failed)

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code: str | None = None


class InvalidType(InvalidRequest):
    code = "invalid_type"


class EmptyArray(InvalidRequest):
    code = "empty_array"


class BelowMinimum(InvalidRequest):
    code = "integer_below_min_value"


class AboveMaximum(InvalidRequest):
    code = "integer_above_max_value"


class DecimalBelowMinimum(InvalidRequest):
    code = "decimal_below_min_value"


class DecimalAboveMaximum(InvalidRequest):
    code = "decimal_above_max_value"


class InvalidValue(InvalidRequest):
    code = "invalid_value"


class ArrayTooLong(InvalidRequest):
    code = "array_above_max_length"


class NestingTooDeep(InvalidRequest):
    code = "nesting_too_deep"


class ContentPolicyViolation(InvalidRequest):
    """A guardrail rule blocked the request or its answer: names the rule, never the text."""

    code = "content_policy_violation"

    def __init__(self, rule: str, *, on_output: bool = False) -> None:
        what = "answer" if on_output else "request"
        super().__init__(f"The {what} was blocked by the guardrail rule '{rule}'.")
        self.detail = f"guardrail {rule} blocked the {what}"


class GuardrailUnavailable(GatewayError):
    """A guardrail that must check the request could not (its classifier did not answer)
    and fails closed: retryable, not the caller's fault."""

    status = 503
    type = "api_error"
    code = "guardrail_unavailable"

    def __init__(self, rule: str, why: str) -> None:
        super().__init__(
            f"The guardrail rule '{rule}' could not check the request ({why}); "
            "it fails closed, so the request was not sent. Try again shortly.",
            headers={"retry-after": "1"},
        )
        self.detail = f"guardrail {rule} unavailable: {why}"


class ClientDisconnected(GatewayError):
    """The client hung up before its request was read: a 499 nobody receives, no trace,
    no error code (nothing was wrong with the request or the gateway)."""

    status = 499
    type = "client_disconnected"
    code = None


class UnsupportedContentType(InvalidRequest):
    code = "unsupported_content_type"


class UnsupportedContentEncoding(InvalidRequest):
    """415 (RFC 9110 §15.5.16): a body in a content coding (gzip, br…) the gateway does not
    decode; `Accept-Encoding: identity` says what it takes (RFC 7694 §3)."""

    status = 415
    code = "unsupported_encoding"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"accept-encoding": "identity"})


class BodyTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class ModelNotFound(InvalidRequest):
    status = 404
    code = "model_not_found"


class EndpointNotSupported(InvalidRequest):
    code = "unsupported_endpoint"


class NotFound(InvalidRequest):
    status = 404
    code = "not_found"


class PreviousResponseNotFound(InvalidRequest):
    """A `previous_response_id` this gateway did not mint for the caller's team."""

    status = 404
    code = "previous_response_not_found"


class ItemNotFound(InvalidRequest):
    """A Responses input item's id this gateway did not mint for the caller's team."""

    status = 404
    code = None


class MethodNotAllowed(InvalidRequest):
    status = 405
    code = "method_not_allowed"


class AuthenticationFailed(GatewayError):
    """401: no, bad, expired or revoked token (RFC 6750 §3.1 header added)."""

    status = 401
    type = "authentication_error"
    code = "invalid_api_key"

    def __init__(self, message: str, *, token_sent: bool) -> None:
        challenge = 'Bearer realm="llm-gateway"'
        if token_sent:
            challenge += ', error="invalid_token"'
        super().__init__(message, headers={"www-authenticate": challenge})


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class ModelNotAllowed(PermissionDenied):
    code = "model_not_allowed"


class InsufficientScope(PermissionDenied):
    code = "insufficient_scope"

    def __init__(self, message: str, *, scope: str) -> None:
        super().__init__(
            message,
            headers={
                "www-authenticate": (
                    f'Bearer realm="llm-gateway", error="insufficient_scope", scope="{scope}"'
                )
            },
        )


class UpstreamUnavailable(GatewayError):
    status = 502
    type = "api_error"
    code = "upstream_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "api_error"
    code = "upstream_timeout"


class DatabaseUnavailable(GatewayError):
    """The gateway's own database did not answer: retryable, not the caller's fault."""

    status = 503
    type = "api_error"
    code = "database_unavailable"


class UpstreamRejected(GatewayError):
    """An upstream's own 4xx for the caller's request, passed through cleaned."""

    type = "invalid_request_error"
    code: str | None = None

    def __init__(
        self, status: int, message: str, *, type_: str | None, param: str | None, code: str | None
    ) -> None:
        super().__init__(message, param=param)
        self.status = status
        self.type = type_ or "invalid_request_error"
        self.code = code


# What a record (ledger row, access line, span) keeps of an error's code: an identifier.
# An upstream's refusal is relayed to its caller as sent, and its `code` may be any text
# (a prompt quoted back, tens of KB); no record keeps such a code, only that it was one.
RECORDED_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
UNRECORDED_CODE = "upstream_code_not_recorded"


def recorded_code(code: str | None) -> str | None:
    """`code` as the gateway's records keep it: itself when it is an identifier (every
    code of the gateway's own, and OpenAI's), else UNRECORDED_CODE."""
    if code is None or RECORDED_CODE.fullmatch(code):
        return code
    return UNRECORDED_CODE


def error_body_bytes(error: GatewayError) -> bytes:
    return orjson.dumps(error.body())


def error_response(error: GatewayError, request_id: str | None = None) -> Response:
    headers = dict(error.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return Response(
        error_body_bytes(error),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )


def unexpected(exc: Exception) -> GatewayError:
    """What the caller is told about an exception no stage turned into a GatewayError."""
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, DBAPIError | PoolTimeout):
        # An outage, not a bug: 503 with a hint, so SDKs and load balancers retry.
        return DatabaseUnavailable(
            "The gateway's database is unavailable; try again shortly.",
            headers={"retry-after": "1"},
        )
    return GatewayError("The gateway hit an internal error.")
