"""The built-in issuer's HTTP edge: POST /oauth/token, RFC 8414 metadata, the JWKS.

Each answers at its root path and, when GATEWAY_ISSUER_URL has a path (`/gw`),
where the metadata advertises it (`/gw/oauth/token`) and, for the metadata, at
RFC 8414 §3.1's `/.well-known/oauth-authorization-server/gw`.

Parses the form body and renders the issuer's answers; the protocol itself is
`gateway/auth/issuer.py`. Token endpoint errors use OAuth's shape
(`{"error", "error_description"}`, RFC 6749 §5.2), which OAuth client
libraries expect, rather than OpenAI's; a repeated Authorization header or form
parameter is 400 `invalid_request`. No token is needed on these paths.
Each request gets its access line; a token request's names the client id it
claimed (a failed login included), never the secret, the form or the token.

A secret check costs ~60 ms of scrypt, so the token endpoint is guarded
(`gateway/auth/login_guard.py`): a pair that verified within the last minute
goes straight through; otherwise too many recent failures from the source
address (for the client id it names, or in all; another address's failures
never count), or no free check slot within a second, answer 429 with
`retry-after` and `{"error": "slow_down"}` (the token-endpoint error RFC 8628
§3.5 registers for "back off"; RFC 6749 §5.2 has none for it). A database outage
answers 503 `{"error": "temporarily_unavailable"}` with `retry-after` (the code RFC 6749
§4.1.2.1 registers for it), with the one warning line app.py writes for other paths.
"""

from __future__ import annotations

import logging
import math
from urllib.parse import parse_qsl

import orjson
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from gateway.api.body import check_declared_length, read_body_bytes
from gateway.api.edge import access_line
from gateway.auth.authorization_header import MSG_REPEATED, RepeatedAuthorization, authorization_of
from gateway.auth.issuer import JWKS_PATH, METADATA_PATH, TOKEN_PATH, TokenReply, oauth_error
from gateway.auth.login_guard import LoginBusy
from gateway.context import EdgeContext
from gateway.errors import BodyTooLarge
from gateway.services import Services

log = logging.getLogger(__name__)

# The outages app.py answers with its 503 `database_unavailable`; here in OAuth's shape.
DATABASE_OUTAGES = (OperationalError, InterfaceError, PoolTimeout)
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 32
MAX_LOGGED_CLIENT_ID = 128  # the caller's text until it authenticates: keep its line short
FORM_TYPE = "application/x-www-form-urlencoded"


def _render(reply: TokenReply, request_id: str) -> Response:
    return Response(
        orjson.dumps(reply.body),
        status_code=reply.status,
        headers={**reply.headers, "x-request-id": request_id},
        media_type="application/json",
    )


def _claimed_credentials(authorization: str | None, form: dict[str, str]) -> tuple[str, str]:
    """The client id and secret the request names (Basic, else form fields); "" if none."""
    try:
        basic_id, basic_secret = extract_basic_authorization(
            {"Authorization": authorization} if authorization else {}
        )
    except ValueError:  # credentials that are not UTF-8
        basic_id = basic_secret = None
    if basic_id:
        return basic_id, basic_secret or ""
    return form.get("client_id") or "", form.get("client_secret") or ""


def _slow_down(wait_s: int, description: str) -> TokenReply:
    reply = oauth_error(429, "slow_down", description)
    return TokenReply(reply.status, reply.body, {**reply.headers, "retry-after": str(wait_s)})


def _over_failure_limit(services: Services, client_id: str, address: str) -> TokenReply | None:
    wait_s = services.clients.login_guard.retry_after_s(client_id, address)
    if wait_s is None:
        return None
    return _slow_down(
        max(1, math.ceil(wait_s)), "Too many failed client authentications; retry later."
    )


async def _guarded_token_response(
    services: Services, authorization: str | None, form: dict[str, str], address: str
) -> TokenReply:
    """The issuer's answer, within the login guard's limits (see the module docstring)."""
    guard = services.clients.login_guard
    client_id, secret = _claimed_credentials(authorization, form)
    if client_id and secret and guard.verified.has(client_id, secret):
        # Verified within the last minute: no scrypt, so no slot and no failure limit
        # (a client keeps working even behind an address that others' failures limit).
        return await services.issuer.token_response(authorization, form)
    refusal = _over_failure_limit(services, client_id, address)
    if refusal is not None:
        return refusal
    try:
        async with guard.slot():
            # Again: failures recorded while this one waited for its slot count too.
            refusal = _over_failure_limit(services, client_id, address)
            if refusal is not None:
                return refusal
            reply = await services.issuer.token_response(authorization, form)
    except LoginBusy:
        return _slow_down(1, "The token endpoint is busy; retry shortly.")
    if reply.body.get("error") == "invalid_client":
        guard.record_failure(client_id, address)
    return reply


async def _read_form(request: Request) -> dict[str, str] | TokenReply:
    """The form fields, or the error to answer with (RFC 6749 §3.2: each at most once)."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != FORM_TYPE:
        return oauth_error(400, "invalid_request", f"Send the parameters as {FORM_TYPE}.")
    try:  # a client that hangs up mid-upload raises ClientDisconnected: a 499
        check_declared_length(request.headers.get("content-length"), MAX_FORM_BYTES)
        raw = await read_body_bytes(request.receive, MAX_FORM_BYTES)
    except BodyTooLarge:
        # HTTP's status for it (RFC 9110 §15.5.14), with OAuth's error body.
        return oauth_error(413, "invalid_request", "The request body is too large.")
    try:
        pairs = parse_qsl(
            raw.decode(),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError:  # not UTF-8, or too many fields
        return oauth_error(400, "invalid_request", "The request body is not a valid form.")
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            return oauth_error(400, "invalid_request", "A parameter is repeated.")
        form[name] = value
    return form


async def _token_reply(request: Request, services: Services, ctx: EdgeContext) -> TokenReply:
    try:
        authorization = authorization_of(request.scope["headers"])
    except RepeatedAuthorization:  # RFC 6749 §2.3: one authentication method, sent once
        return oauth_error(400, "invalid_request", MSG_REPEATED)
    form = await _read_form(request)
    if isinstance(form, TokenReply):
        return form
    client_id = _claimed_credentials(authorization, form)[0]
    ctx.client_id = client_id[:MAX_LOGGED_CLIENT_ID] or None
    address = request.client.host if request.client else ""
    return await _guarded_token_response(services, authorization, form, address)


def _database_unavailable(exc: Exception) -> TokenReply:
    """app.py's answer to an outage (one warning line, no trace), in OAuth's shape."""
    from gateway.db import DatabaseFileChanged

    if isinstance(exc, DatabaseFileChanged):
        reason = exc.reason
    else:
        orig = getattr(exc, "orig", None)  # the driver's error, without SQLAlchemy's SQL
        reason = f"{type(orig or exc).__name__}: {orig or exc}"
    log.warning(
        "database unavailable: answered 503",
        extra={"fields": {"path": TOKEN_PATH, "reason": reason[:200]}},
    )
    reply = oauth_error(
        503, "temporarily_unavailable", "The gateway's database is unavailable; try again shortly."
    )
    return TokenReply(reply.status, reply.body, {**reply.headers, "retry-after": "1"})


async def token(request: Request) -> Response:
    """Issue an access token (client_credentials)."""
    services: Services = request.state.services
    with access_line(request, services) as ctx:
        try:
            reply = await _token_reply(request, services, ctx)
        except DATABASE_OUTAGES as exc:
            reply = _database_unavailable(exc)
        ctx.end(reply.status, reply.body.get("error") if reply.status >= 400 else None)
        return _render(reply, ctx.request_id)


async def metadata(request: Request) -> Response:
    """RFC 8414: where the token endpoint and keys are, and what they support."""
    services: Services = request.state.services
    with access_line(request, services) as ctx:
        return Response(
            orjson.dumps(services.issuer.metadata()),
            media_type="application/json",
            headers={"cache-control": "public, max-age=300", "x-request-id": ctx.request_id},
        )


async def jwks(request: Request) -> Response:
    """The public keys that verify our tokens; cached briefly so a rotation shows quickly."""
    services: Services = request.state.services
    with access_line(request, services) as ctx:
        return Response(
            await services.issuer.jwks(),
            media_type="application/json",
            headers={"cache-control": "public, max-age=10", "x-request-id": ctx.request_id},
        )


class _IssuerRoute(Route):
    """One of the issuer's routes: at its root path, and at the paths the issuer URL's
    own path adds (`TokenIssuer.paths`: `/gw/oauth/token`, …). Those are known only once
    the services run, so they are matched per request, from the request's services."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is Match.NONE and self._is_issuer_path(scope):
            return super().matches({**scope, "path": self.path, "root_path": ""})
        return match, child

    def _is_issuer_path(self, scope: Scope) -> bool:
        services = scope.get("state", {}).get("services") if scope["type"] == "http" else None
        if services is None:
            return False
        path = scope["path"].removeprefix(scope.get("root_path", ""))  # as Route matches
        return bool(services.issuer.paths.get(path) == self.path)


routes = [
    _IssuerRoute(TOKEN_PATH, token, methods=["POST"]),
    _IssuerRoute(METADATA_PATH, metadata, methods=["GET"]),
    _IssuerRoute(JWKS_PATH, jwks, methods=["GET"]),
]
