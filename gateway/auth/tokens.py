"""Access tokens of the built-in issuer: minting, and verifying them into a Principal.

Owns the RFC 9068 token shape (header `typ: at+jwt`, claims iss, sub, aud, exp,
iat, nbf, jti, client_id, scope, team) and its verification: RS256 only, the key
chosen by `kid` from our key set, every claim checked explicitly (joserfc's
`decode` checks only the signature), and verified tokens cached until they
expire. Every refusal is `AuthenticationFailed` with a short message that says
nothing about which check failed; the reason is logged at debug level.
External issuers (their JWKS, claim mapping) are not handled here.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any, Protocol

from joserfc import jws, jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from gateway.auth.keys import SigningKey
from gateway.auth.principal import Principal
from gateway.errors import AuthenticationFailed

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256",)  # our own tokens; never "none", never HS* (key confusion)
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
MAX_TOKEN_CHARS = 8192  # ours are ~900; anything far larger is refused unparsed
DEFAULT_LEEWAY_S = 30
DEFAULT_MAX_CACHED = 10_000

MSG_INVALID = "The access token is invalid."
MSG_EXPIRED = "The access token has expired."
MSG_NOT_YET_VALID = "The access token is not valid yet."


def mint_token(
    key: SigningKey,
    *,
    issuer: str,
    audience: str,
    team: str,
    subject: str,
    client_id: str,
    scopes: Iterable[str],
    ttl_s: int,
    now: float,
) -> str:
    """A signed RFC 9068 access token valid from `now` (unix seconds) for `ttl_s` seconds."""
    issued_at = int(now)
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": issued_at + ttl_s,
        "iat": issued_at,
        "nbf": issued_at,
        "jti": secrets.token_urlsafe(16),
        "client_id": client_id,
        "scope": " ".join(sorted(set(scopes))),
        "team": team,
    }
    header = {"typ": "at+jwt", "alg": key.algorithm, "kid": key.kid}
    return jwt.encode(header, claims, key.private_key, algorithms=ALGORITHMS)


class VerificationKeys(Protocol):
    """Where the verifier gets public keys; `SigningKeyStore` is one."""

    async def verification_keys(self) -> KeySet: ...

    async def refresh_if_unknown(self, kid: str) -> bool: ...


class _Refused(Exception):
    """Internal: a failed check; `message` goes to the caller, `reason` to the debug log."""

    def __init__(self, reason: str, message: str = MSG_INVALID) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


class TokenVerifier:
    """Verifies our own access tokens; a token seen before costs one dict lookup.

    The cache maps the token string to (principal, deadline) where deadline is
    `exp + leeway_s`; past it the entry is dropped and the token refused. When
    the cache is full, expired entries go first, then the oldest half.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        keys: VerificationKeys,
        *,
        leeway_s: float = DEFAULT_LEEWAY_S,
        clock: Callable[[], float] = time.time,
        max_cached: int = DEFAULT_MAX_CACHED,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self._keys = keys
        self._leeway_s = leeway_s
        self._clock = clock
        self._max_cached = max_cached
        self._cache: dict[str, tuple[Principal, float]] = {}

    async def verify(self, token: str) -> Principal:
        """The caller behind `token`, or `AuthenticationFailed` (401, token_sent=True)."""
        entry = self._cache.get(token)
        if entry is None:
            return await self._verify_uncached(token)
        if self._clock() <= entry[1]:
            return entry[0]
        self._cache.pop(token, None)
        raise AuthenticationFailed(MSG_EXPIRED, token_sent=True)

    async def _verify_uncached(self, token: str) -> Principal:
        try:
            claims = await self._decode(token)
            principal = self._principal(claims, self._clock())
        except _Refused as refused:
            log.debug("access token refused: %s", refused.reason)
            raise AuthenticationFailed(refused.message, token_sent=True) from None
        self._remember(token, principal)
        return principal

    async def _decode(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2 or not token.isascii():
            raise _Refused("malformed or oversize")
        key_set = await self._keys.verification_keys()
        try:
            try:
                decoded = jwt.decode(token, key_set, algorithms=ALGORITHMS)
            except InvalidKeyIdError:
                # Maybe a key created since we loaded the set (another replica rotated).
                kid = jws.extract_compact(token.encode()).protected.get("kid")
                if not isinstance(kid, str) or not await self._keys.refresh_if_unknown(kid):
                    raise _Refused("unknown kid") from None
                decoded = jwt.decode(
                    token, await self._keys.verification_keys(), algorithms=ALGORITHMS
                )
        except JoseError as error:
            raise _Refused(f"{type(error).__name__}") from None
        except (ValueError, TypeError) as error:  # belt and braces: garbage joserfc did not wrap
            raise _Refused(f"undecodable: {type(error).__name__}") from None
        header = decoded.header
        if not isinstance(header.get("kid"), str):
            # joserfc accepts a kid-less token when the set holds one key; we never mint those.
            raise _Refused("no kid")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise _Refused("typ is not at+jwt")
        return decoded.claims

    def _principal(self, claims: dict[str, Any], now: float) -> Principal:
        leeway = self._leeway_s
        if claims.get("iss") != self.issuer:
            raise _Refused("wrong issuer")
        aud = claims.get("aud")
        if not (aud == self.audience or (isinstance(aud, list) and self.audience in aud)):
            raise _Refused("wrong audience")
        exp = _required_number(claims, "exp")
        if now > exp + leeway:
            raise _Refused("expired", MSG_EXPIRED)
        nbf = _number(claims, "nbf")
        if nbf is not None and now + leeway < nbf:
            raise _Refused("nbf in the future", MSG_NOT_YET_VALID)
        iat = _required_number(claims, "iat")
        if now + leeway < iat:
            raise _Refused("iat in the future")
        team = _string(claims, "team")
        subject = _string(claims, "sub")
        client_id = _string(claims, "client_id")
        _string(claims, "jti")  # RFC 9068 §2.2: required; we mint it, so its absence is forgery
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise _Refused("scope is not a string")
        return Principal(
            team=team,
            subject=subject,
            client_id=client_id,
            scopes=frozenset(scope.split()),
            issuer=self.issuer,
            expires_at=exp,
        )

    def _remember(self, token: str, principal: Principal) -> None:
        cache = self._cache
        if len(cache) >= self._max_cached:
            now = self._clock()
            for stale in [t for t, (_, deadline) in cache.items() if deadline < now]:
                del cache[stale]
            if len(cache) >= self._max_cached:
                for oldest in list(islice(cache, max(1, len(cache) // 2))):
                    del cache[oldest]
        cache[token] = (principal, principal.expires_at + self._leeway_s)


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # bool is an int; json.loads accepts NaN and Infinity.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Refused(f"{name} is not a number")
    return float(value)


def _required_number(claims: dict[str, Any], name: str) -> float:
    value = _number(claims, name)
    if value is None:
        raise _Refused(f"{name} missing")
    return value


def _string(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise _Refused(f"{name} missing or not a string")
    return value


async def mint_with_current_key(
    database_url: str,
    *,
    issuer: str,
    audience: str,
    team: str,
    subject: str,
    client_id: str,
    scopes: Iterable[str],
    ttl_s: int,
    now: float,
) -> str:
    """Mint with the database's current signing key (admin tools, tests); creates it if none."""
    from gateway.auth.keys import SigningKeyStore
    from gateway.db import create_engine

    engine = create_engine(database_url)
    try:
        key = await SigningKeyStore(engine).current()
    finally:
        await engine.dispose()
    return mint_token(
        key,
        issuer=issuer,
        audience=audience,
        team=team,
        subject=subject,
        client_id=client_id,
        scopes=scopes,
        ttl_s=ttl_s,
        now=now,
    )
