"""A fake OAuth identity provider on 127.0.0.1 (port 0): keys, discovery, JWKS, minting.

    async with FakeIdP() as idp:
        token = idp.mint({"aud": "llm-gateway", "team": "search"}, alg="ES256")
        new_kid = idp.rotate("RS256")           # publish a new key; sign with it from now on
        await idp.go_offline("refuse")          # or "503", "500", "404", "not-json", "hang"
        assert idp.jwks_requests == 1

It publishes one key per algorithm it signs with (RS256, PS256, ES256, EdDSA
on Ed25519), each JWK naming its `alg`, at `/jwks` and, through discovery,
at `/.well-known/openid-configuration` (or only RFC 8414 metadata with
`discovery="oauth"`). Keys are generated per instance.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from typing import Any, Literal

import orjson
from aiohttp import web
from joserfc.jwk import ECKey, Key, KeyParameters, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

Algorithm = Literal["RS256", "PS256", "ES256", "EdDSA"]
ALGORITHMS: tuple[Algorithm, ...] = ("RS256", "PS256", "ES256", "EdDSA")
Offline = Literal["503", "500", "404", "not-json", "no-keys", "hang", "refuse"]
HANG_LIMIT_S = 60.0  # a hanging IdP answers after this (or when it comes online)


def new_key(alg: str, kid: str) -> Key:
    params: KeyParameters = {"kid": kid, "alg": alg, "use": "sig"}
    if alg in ("RS256", "PS256"):
        return RSAKey.generate_key(2048, parameters=params)
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=params)
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519", parameters=params)
    raise ValueError(f"the fake IdP does not sign with {alg}")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def json_segment(value: Mapping[str, Any]) -> str:
    return b64url(orjson.dumps(value))


class FakeIdP:
    def __init__(self, *, discovery: Literal["openid", "oauth"] = "openid") -> None:
        self.discovery = discovery
        self.port = 0
        self.jwks_requests = 0
        self.metadata_requests = 0
        self.offline: Offline | None = None
        self._back = asyncio.Event()  # set while online: what a hanging answer waits for
        self._back.set()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._keys: dict[str, Key] = {}  # kid → private key; all of them are published
        self._signing: dict[str, str] = {}  # alg → kid that signs now
        for alg in ALGORITHMS:
            self.rotate(alg)

    # --- what tests use -----------------------------------------------------------

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    def kid(self, alg: str = "RS256") -> str:
        """The kid that signs `alg` tokens now."""
        return self._signing[alg]

    def key(self, kid: str) -> Key:
        return self._keys[kid]

    def rotate(self, alg: str = "RS256", *, keep_old: bool = True) -> str:
        """Publish a new key for `alg` and sign with it from now on; its kid."""
        kid = f"{alg.lower()}-{secrets.token_hex(4)}"
        old = self._signing.get(alg)
        self._keys[kid] = new_key(alg, kid)
        self._signing[alg] = kid
        if old is not None and not keep_old:
            del self._keys[old]
        return kid

    def claims(self, ttl_s: int = 600, now: float | None = None) -> dict[str, Any]:
        """The claims every minted token starts from (iss, sub, iat, nbf, exp, jti)."""
        issued = int(time.time() if now is None else now)
        return {
            "iss": self.issuer,
            "sub": "user-1",
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_s,
            "jti": secrets.token_hex(8),
        }

    def mint(
        self,
        claims: Mapping[str, Any] | None = None,
        *,
        alg: str = "RS256",
        kid: str | None = None,
        headers: Mapping[str, Any] | None = None,
        ttl_s: int = 600,
        now: float | None = None,
    ) -> str:
        """A token signed by the current key for `alg`.

        `claims` and `headers` are merged over the defaults (header typ at+jwt,
        alg, kid); a value of None removes that member. `kid` only changes the
        header: the signing key stays the current one (an "unknown kid" token).
        """
        signing_kid = self._signing[alg]
        header = {"typ": "at+jwt", "alg": alg, "kid": kid or signing_kid, **(headers or {})}
        body = {**self.claims(ttl_s, now), **(claims or {})}
        header = {k: v for k, v in header.items() if v is not None}
        body = {k: v for k, v in body.items() if v is not None}
        # Signed by hand: joserfc's checks would refuse the odd headers attack tests need.
        signing_input = f"{json_segment(header)}.{json_segment(body)}"
        signature = JWSRegistry.algorithms[alg].sign(
            signing_input.encode(), self._keys[signing_kid]
        )
        return f"{signing_input}.{b64url(signature)}"

    def forge_hs256_with_public_key(self, claims: Mapping[str, Any]) -> str:
        """The HS/RS confusion attack: HMAC-SHA256 keyed with the RSA key's public PEM."""
        kid = self._signing["RS256"]
        signing_input = f"{json_segment({'typ': 'at+jwt', 'alg': 'HS256', 'kid': kid})}."
        signing_input += json_segment({**self.claims(), **claims})
        key = self._keys[kid]
        assert isinstance(key, RSAKey)
        pem = key.as_pem(private=False)
        mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(mac)}"

    def forge_alg_none(self, claims: Mapping[str, Any]) -> str:
        header = {"typ": "at+jwt", "alg": "none", "kid": self._signing["RS256"]}
        return f"{json_segment(header)}.{json_segment({**self.claims(), **claims})}."

    async def go_offline(self, mode: Offline = "503") -> None:
        """How it is down until `come_online`: "503", "500", "404" answer every request with that
        status; "not-json" answers 200 with an HTML page; "no-keys" answers a JWK set (and
        metadata) with an empty `keys` list, as an IdP mid-deploy might; "hang" accepts the request and never
        answers; "refuse" closes the port (connection refused) and cuts kept-alive connections."""
        self.offline = mode
        self._back.clear()
        if mode == "refuse" and self._site is not None:
            await self._site.stop()
            self._site = None

    async def come_online(self) -> None:
        self.offline = None
        self._back.set()
        if self._site is None and self._runner is not None:
            self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
            await self._site.start()

    # --- the server ---------------------------------------------------------------

    def _jwks(self) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False) for key in self._keys.values()]}

    def _metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "token_endpoint": f"{self.issuer}/token",
            "response_types_supported": ["token"],
            "grant_types_supported": ["client_credentials"],
            "id_token_signing_alg_values_supported": list(ALGORITHMS),
        }

    async def _serve_jwks(self, request: web.Request) -> web.Response:
        self.jwks_requests += 1
        return await self._answer(request, self._jwks())

    async def _serve_metadata(self, request: web.Request) -> web.Response:
        self.metadata_requests += 1
        wanted = "openid" if request.path.endswith("openid-configuration") else "oauth"
        if wanted != self.discovery:
            return web.Response(status=404)
        return await self._answer(request, self._metadata())

    async def _answer(self, request: web.Request, document: dict[str, Any]) -> web.Response:
        if self.offline == "refuse" and request.transport is not None:
            # A connection kept alive from before the port closed: cut it, as a dead host would.
            request.transport.abort()
        if self.offline == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._back.wait(), HANG_LIMIT_S)
        if self.offline in ("503", "500", "404"):
            return web.Response(status=int(self.offline), text="maintenance")
        if self.offline == "not-json":
            return web.Response(text="<html>down for maintenance</html>", content_type="text/html")
        if self.offline == "no-keys" and "keys" in document:
            document = {"keys": []}
        return web.Response(body=orjson.dumps(document), content_type="application/json")

    async def __aenter__(self) -> FakeIdP:
        app = web.Application()
        app.router.add_get("/jwks", self._serve_jwks)
        app.router.add_get("/.well-known/openid-configuration", self._serve_metadata)
        app.router.add_get("/.well-known/oauth-authorization-server", self._serve_metadata)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0, reuse_address=True)
        await self._site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
