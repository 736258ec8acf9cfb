"""The built-in authorization server: client_credentials tokens, its metadata and JWKS.

Owns the token endpoint's protocol (RFC 6749 §4.4; client authentication by
`client_secret_basic` or `client_secret_post`; errors as in §5.2, a failed
client authentication always 401 + `WWW-Authenticate: Basic`), the RFC 8414
metadata document and the published key set. authlib runs the protocol. It is
synchronous, so what it needs from the database (the client, the signing key)
is fetched first, and authlib runs in a worker thread because checking a
secret costs a deliberate ~60 ms of scrypt. Tokens are RFC 9068 JWTs from
`mint_token`. HTTP parsing and rendering stay in `gateway/api/oauth.py`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson
from authlib.common.security import is_secure_transport
from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Request
from authlib.oauth2.rfc6749.authenticate_client import ClientAuthentication
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list

from gateway.auth.access_tokens import mint_token
from gateway.auth.claims import DEFAULT_LEEWAY_S
from gateway.auth.client_secrets import verify_secret
from gateway.auth.clients import KNOWN_SCOPES, ClientRegistry, StoredClient
from gateway.auth.keys import SigningKey, SigningKeyStore

log = logging.getLogger(__name__)

TOKEN_PATH = "/oauth/token"
JWKS_PATH = "/.well-known/jwks.json"
METADATA_PATH = "/.well-known/oauth-authorization-server"
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
# How often a replica re-reads the current signing key, so `keys rotate` run
# anywhere signs everywhere within this (a verifier learns the kid on first sight).
CURRENT_KEY_POLL_S = 1.0


def issuer_paths(issuer_url: str) -> dict[str, str]:
    """Where the endpoints also answer when the issuer URL has a path (`https://host/gw`):
    under it, as the metadata advertises them, and the metadata where RFC 8414 §3.1 puts
    it (`/.well-known/oauth-authorization-server/gw`). Each such path → its root path."""
    path = urlsplit(issuer_url).path
    prefix = path.rstrip("/")
    if not prefix:
        return {}
    paths = {prefix + root: root for root in (TOKEN_PATH, JWKS_PATH, METADATA_PATH)}
    for written in (path, prefix):  # `/gw/` as the issuer says, and without its slash
        paths[METADATA_PATH + written] = METADATA_PATH
    return paths


def retired_key_verify_s(token_ttl_s: float, leeway_s: float = DEFAULT_LEEWAY_S) -> float:
    """How long a retired key keeps verifying: a replica may sign with it until it
    notices the rotation, and those tokens live `token_ttl_s` plus the leeway."""
    return token_ttl_s + CURRENT_KEY_POLL_S + leeway_s


JWKS_CACHE_S = 1.0
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
MSG_BAD_CLIENT = "Client authentication failed: unknown client, wrong secret, or revoked client."


@dataclass(frozen=True, slots=True)
class TokenReply:
    """What the token endpoint answers: status, a JSON object, headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def oauth_error(status: int, error: str, description: str) -> TokenReply:
    """An RFC 6749 §5.2 error; `invalid_client` is always 401 with a Basic challenge."""
    headers = dict(NO_STORE)
    if error == "invalid_client":
        status = 401
        headers["www-authenticate"] = 'Basic realm="llm-gateway"'
    return TokenReply(status, {"error": error, "error_description": description}, headers)


class _Client(ClientMixin):  # type: ignore[misc]  # authlib ships no type information
    """A client as authlib sees it; `stored` None means unknown (it never authenticates)."""

    def __init__(self, client_id: str, stored: StoredClient | None) -> None:
        self.client_id = client_id
        self.stored = stored

    def get_client_id(self) -> str:
        return self.client_id

    def check_client_secret(self, client_secret: str) -> bool:
        if self.stored is None:
            return verify_secret(client_secret, None)  # as slow as a real check: no probing
        return self.stored.check_secret(client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in AUTH_METHODS

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"

    def get_default_redirect_uri(self) -> None:
        return None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_response_type(self, response_type: str) -> bool:
        return False


class _Request(OAuth2Request):  # type: ignore[misc]  # authlib ships no type information
    def __init__(self, uri: str, headers: dict[str, str], form: dict[str, str]) -> None:
        super().__init__("POST", uri, headers=headers)
        self.payload = BasicOAuth2Payload(form)
        self._form = form

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class _Grant(ClientCredentialsGrant):  # type: ignore[misc]  # authlib ships no type information
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)


class _OneRequest(AuthorizationServer):  # type: ignore[misc]  # authlib ships no type information
    """authlib's server bound to one token request: its client and signing key.

    Built per request (a few dict writes) so that nothing request-scoped is
    shared between the worker threads that run it.
    """

    def __init__(self, issuer: TokenIssuer, client: _Client, key: SigningKey) -> None:
        super().__init__(scopes_supported=sorted(KNOWN_SCOPES))
        self._issuer = issuer
        self._client = client
        self._key = key
        self.register_grant(_Grant)
        self.register_token_generator("default", self._generate)

    def query_client(self, client_id: str) -> _Client:
        # Unknown ids get a client that fails its secret check at the same cost.
        return self._client if client_id == self._client.client_id else _Client(client_id, None)

    def authenticate_client(self, request: Any, methods: Any, endpoint: str = "token") -> Any:
        return ClientAuthentication(self.query_client)(request, methods, endpoint)

    def validate_requested_scope(self, scope: str | None) -> None:
        granted = self._client.stored.record.scopes if self._client.stored else ()
        for wanted in scope_to_list(scope) or ():
            if wanted not in KNOWN_SCOPES:
                # Not echoed: the description may hold only a restricted character set.
                known = ", ".join(sorted(KNOWN_SCOPES))
                raise InvalidScopeError(f"A requested scope is unknown; known scopes: {known}.")
            if wanted not in granted:
                raise InvalidScopeError(f"The client may not request the scope '{wanted}'.")

    def _generate(self, *, client: _Client, scope: str | None, **_: Any) -> dict[str, Any]:
        assert client.stored is not None  # only an authenticated client gets here
        record = client.stored.record
        scopes = scope_to_list(scope) or list(record.scopes)
        ttl_s = self._issuer.token_ttl_s
        token = mint_token(
            self._key,
            issuer=self._issuer.issuer_url,
            audience=self._issuer.audience,
            team=record.team,
            subject=record.client_id,
            client_id=record.client_id,
            scopes=scopes,
            ttl_s=ttl_s,
            now=self._issuer.clock(),
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ttl_s,
            "scope": " ".join(sorted(set(scopes))),
        }

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("the token endpoint takes form bodies only")

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        pass  # JWTs are stateless; revocation is per client (ClientRegistry)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def handle_response(
        self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
    ) -> TokenReply:
        if body.get("error") == "invalid_client":
            # One answer for unknown, revoked and wrong secret: nothing to probe.
            return oauth_error(401, "invalid_client", MSG_BAD_CLIENT)
        if "error" in body:
            return oauth_error(status, body["error"], body.get("error_description") or "")
        return TokenReply(status, body, {**{k.lower(): v for k, v in headers}, **NO_STORE})


class TokenIssuer:
    """The built-in issuer: answers token requests, publishes metadata and keys."""

    def __init__(
        self,
        *,
        issuer_url: str,
        audience: str,
        token_ttl_s: int,
        keys: SigningKeyStore,
        clients: ClientRegistry,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer_url = issuer_url
        self.audience = audience
        self.token_ttl_s = token_ttl_s
        self.clock = clock
        self._monotonic = monotonic
        self._keys = keys
        self._clients = clients
        self.token_endpoint = issuer_url.rstrip("/") + TOKEN_PATH
        self.paths = issuer_paths(issuer_url)  # besides the root paths (api/oauth.py)
        self._is_secure = is_secure_transport(self.token_endpoint)
        if not self._is_secure:
            log.warning(
                "the token endpoint %s is not https: OAuth requires TLS, so token requests "
                "are refused; set GATEWAY_ISSUER_URL to the https address clients use "
                "(for a private test network only: AUTHLIB_INSECURE_TRANSPORT=1)",
                self.token_endpoint,
            )
        self._jwks: tuple[float, bytes] | None = None

    async def token_response(
        self, authorization: str | None, form: Mapping[str, str]
    ) -> TokenReply:
        """Answer one token request (already parsed: the Authorization header and form)."""
        if not self._is_secure:
            return oauth_error(400, "invalid_request", "The token endpoint requires https.")
        if not form.get("grant_type"):
            return oauth_error(400, "invalid_request", "Missing 'grant_type' parameter.")
        if form["grant_type"] != "client_credentials":
            return oauth_error(
                400,
                "unsupported_grant_type",
                # Not echoed: a misplaced secret in it would reach the logs (probe p23).
                "This grant_type is not supported; use client_credentials.",
            )
        headers = {"Authorization": authorization} if authorization else {}
        try:
            basic_id, _ = extract_basic_authorization(headers)
        except ValueError:  # credentials that are not UTF-8
            return oauth_error(401, "invalid_client", MSG_BAD_CLIENT)
        if basic_id and form.get("client_secret"):
            return oauth_error(
                400, "invalid_request", "Use one client authentication method, not two."
            )
        if basic_id and form.get("client_id", basic_id) != basic_id:
            # RFC 6749 §3.2.1 lets a client repeat its id in the form: the same id only.
            return oauth_error(
                400,
                "invalid_request",
                "client_id in the form does not match the client authenticated by HTTP Basic.",
            )
        client_id = basic_id or form.get("client_id") or ""
        stored = await self._clients.find(client_id) if client_id else None
        key = await self._keys.current()
        server = _OneRequest(self, _Client(client_id, stored), key)
        request = _Request(self.token_endpoint, headers, dict(form))
        reply: TokenReply = await asyncio.to_thread(server.create_token_response, request)
        return reply

    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 authorization server metadata."""
        base = self.issuer_url.rstrip("/")
        return {
            "issuer": self.issuer_url,
            "token_endpoint": self.token_endpoint,
            "jwks_uri": base + JWKS_PATH,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "scopes_supported": sorted(KNOWN_SCOPES),
            # REQUIRED by RFC 8414 §2, and validators (authlib's) refuse an empty list; there
            # is no authorization endpoint, so no client can ask for one: "token" names
            # what the token endpoint hands out.
            "response_types_supported": ["token"],
        }

    async def jwks(self) -> bytes:
        """The public key set as JSON: the current key, and retired keys whose tokens
        may still be valid (cached for `JWKS_CACHE_S`, so a flood costs one query)."""
        now = self._monotonic()
        if self._jwks is not None and now - self._jwks[0] < JWKS_CACHE_S:
            return self._jwks[1]
        wall = datetime.fromtimestamp(self.clock(), UTC)
        keys = [
            key.public_jwk()
            for key in await self._keys.list_keys()
            if self._keys.still_verifies(key, wall)
        ]
        document = orjson.dumps({"keys": keys})
        self._jwks = (now, document)
        return document
