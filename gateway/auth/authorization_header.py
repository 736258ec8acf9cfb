"""A request's Authorization header: sent once, or the request is invalid. Pure; no I/O.

Read from the raw ASGI header list (names arrive lower-cased), in one pass
that costs what `Headers.get` costs. A repeated header is refused rather than
resolved: RFC 6750 §3.1 names a request with more than one credential
`invalid_request`, and letting the first (or last) one win means a proxy, a
log or another server could read a different caller than the gateway does.
The resource server's refusal is `RepeatedAuthorization`; the token endpoint
renders its own OAuth-shaped 400 (`gateway/api/oauth.py`).

`bearer_token` takes the token out of the header. Only a non-empty Bearer token
counts as a token sent: another scheme (`Basic`) is an unsupported method, for
which RFC 6750 §3.1 says the challenge carries no error code, and `Bearer ` with
nothing after it is no token (SPEC §2: `error="invalid_token"` only "when a token
was sent"). Both stay 401 `invalid_api_key`, which the openai SDK reads as an
AuthenticationError, rather than RFC 6750's 400 `invalid_request`.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.errors import AuthenticationFailed, InvalidRequest

AUTHORIZATION = b"authorization"
MSG_REPEATED = "The Authorization header was sent more than once; send it once."
MSG_NO_TOKEN = "You didn't provide an access token. Send 'Authorization: Bearer TOKEN'."
MSG_NOT_BEARER = "The Authorization header must be 'Bearer TOKEN'."


class RepeatedAuthorization(InvalidRequest):
    """400 `invalid_request` with `WWW-Authenticate: Bearer ... error="invalid_request"`."""

    code = "invalid_request"

    def __init__(self) -> None:
        super().__init__(
            MSG_REPEATED,
            headers={"www-authenticate": 'Bearer realm="llm-gateway", error="invalid_request"'},
        )
        self.detail = "repeated authorization header"


def authorization_of(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The Authorization header's value, None when absent; RepeatedAuthorization when the
    request carries it more than once."""
    found: bytes | None = None
    for name, value in headers:
        if name == AUTHORIZATION:
            if found is not None:
                raise RepeatedAuthorization()
            found = value
    return None if found is None else found.decode("latin-1")


def bearer_token(authorization: str | None) -> str:
    """The token of a `Bearer TOKEN` header; 401 without an error code for anything else
    (no header, an empty token, another scheme): no token was sent."""
    if not authorization:
        raise AuthenticationFailed(MSG_NO_TOKEN, token_sent=False)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        raise AuthenticationFailed(MSG_NOT_BEARER, token_sent=False)
    token = token.strip()
    if not token:
        raise AuthenticationFailed(MSG_NO_TOKEN, token_sent=False)
    return token
