"""Access tokens of the built-in issuer: minting, and verifying them into a Principal.

Owns the RFC 9068 token shape (header `typ: at+jwt`, claims iss, sub, aud, exp,
iat, nbf, jti, client_id, scope, team) and its verification: RS256 only, the key
chosen by `kid` from our key set, every claim checked explicitly (joserfc's
`decode` checks only the signature), `exp - iat` no longer than the issuer
mints, and verified tokens cached until they expire or their key's retirement
cut-off passes, whichever is first: a token signed with a key that leaked is why
keys rotate, so no token of a retired key verifies past its cut-off, cached or
not, nor one it claims to have issued after its retirement. Every refusal is `InvalidToken` with
a short message that names the failed claim for `iss`, `aud` and time (never the
expected values), says when the key is unknown here (a token minted against
another database) and nothing else about signature or key checks; the reason is
logged at debug level.
External issuers (their JWKS, claim mapping) are not handled here.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from joserfc import jws, jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from gateway.auth.cache import DEFAULT_MAX_CACHED, TokenCache
from gateway.auth.claims import (
    DEFAULT_LEEWAY_S,
    MSG_UNKNOWN_KEY,
    Refused,
    check_lifetime,
    required_number,
    string_claim,
    wrong_audience,
    wrong_issuer,
)
from gateway.auth.keys import SigningKey
from gateway.auth.principal import Principal

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256",)  # our own tokens; never "none", never HS* (key confusion)
# What mint_token writes. RFC 9068 §4: a resource server accepts `at+jwt` or its full
# media type `application/at+jwt` (compared case-insensitively, as media types are) and
# refuses any other typ, absent too.
ACCESS_TOKEN_TYPE = "at+jwt"
ACCEPTED_TYPES = frozenset({ACCESS_TOKEN_TYPE, "application/at+jwt"})
MAX_TOKEN_CHARS = 8192  # ours are ~900; anything far larger is refused unparsed
REASON_RETIRED = "signed by a retired key past its cut-off"
# A retired key verifies the tokens it signed before its retirement, not new ones: a token
# issued after it was signed with a leaked copy of the key.
REASON_AFTER_RETIREMENT = "issued by a retired key after its retirement"
# GATEWAY_TOKEN_TTL_S's default; services pass the setting.
DEFAULT_MAX_LIFETIME_S = 3600.0
MSG_TOO_LONG = "The access token lives longer (exp - iat) than this gateway issues tokens for."


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
    header = {"typ": ACCESS_TOKEN_TYPE, "alg": key.algorithm, "kid": key.kid}
    return jwt.encode(header, claims, key.private_key, algorithms=ALGORITHMS)


class VerificationKeys(Protocol):
    """Where the verifier gets public keys; `SigningKeyStore` is one."""

    async def verification_keys(self) -> KeySet: ...

    async def refresh_if_unknown(self, kid: str) -> bool: ...

    def retires_at(self, kid: str) -> float | None:
        """Unix second from which `kid` never verifies; None while it is current."""
        ...

    def signs_until(self, kid: str) -> float | None:
        """Unix second after which no token of `kid` was issued (it was retired, and every
        process had moved to the new key); None while it is current."""
        ...


class TokenVerifier:
    """Verifies our own access tokens; a token seen before costs one dict lookup.

    The cache maps the token string to ((principal, kid), deadline) where deadline
    is `exp + leeway_s`; past it the entry is dropped and the token refused. A hit
    also asks the key set whether `kid` has retired past its cut-off since (a dict
    lookup): then the entry is dropped and the token refused too. When the cache
    is full, expired entries go first, then the oldest half.
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
        also_accepts: Callable[[str], bool] = lambda issuer: False,
        max_lifetime_s: float = DEFAULT_MAX_LIFETIME_S,
    ) -> None:
        self.issuer = issuer
        # Other `iss` values our own signed tokens may carry (settings.is_derived_issuer).
        self.also_accepts = also_accepts
        self.audience = audience
        self._keys = keys
        self.leeway_s = leeway_s
        # The issuer mints `exp - iat` = GATEWAY_TOKEN_TTL_S exactly: a token of our key
        # that claims a longer life was signed with a leaked key, and would outlive the
        # key's retirement cut-off, which assumes no token lives longer.
        self.max_lifetime_s = max_lifetime_s
        self._clock = clock
        self._cache: TokenCache[tuple[Principal, str]] = TokenCache(clock, max_cached)

    def accepts_issuer(self, issuer: str) -> bool:
        return issuer == self.issuer or self.also_accepts(issuer)

    async def verify(self, token: str) -> Principal:
        """The caller behind `token`, or `AuthenticationFailed` (401, token_sent=True)."""
        entry = self._cache.get(token)
        if entry is None:
            return await self._verify_uncached(token)
        principal, kid = entry[0]
        if self._is_retired(kid, self._clock()):
            self._cache.entries.pop(token, None)
            log.debug("access token refused: %s", REASON_RETIRED)
            raise Refused(REASON_RETIRED).as_error()
        return principal

    def _is_retired(self, kid: str, now: float) -> bool:
        cutoff = self._keys.retires_at(kid)
        return cutoff is not None and now >= cutoff

    async def _verify_uncached(self, token: str) -> Principal:
        now = self._clock()
        try:
            claims, kid = await self._decode(token)
            if self._is_retired(kid, now):
                # The key set may still hold it until its next reload: the cut-off decides.
                raise Refused(REASON_RETIRED)
            principal = self._principal(claims, now)
            signs_until = self._keys.signs_until(kid)
            if signs_until is not None and required_number(claims, "iat") > (
                signs_until + self.leeway_s
            ):
                raise Refused(REASON_AFTER_RETIREMENT)
        except Refused as refused:
            log.debug("access token refused: %s", refused.reason)
            raise refused.as_error() from None
        self._cache.remember(token, (principal, kid), principal.expires_at + self.leeway_s)
        return principal

    async def _decode(self, token: str) -> tuple[dict[str, Any], str]:
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2 or not token.isascii():
            raise Refused("malformed or oversize")
        key_set = await self._keys.verification_keys()
        try:
            try:
                decoded = jwt.decode(token, key_set, algorithms=ALGORITHMS)
            except InvalidKeyIdError:
                # Maybe a key created since we loaded the set (another replica rotated).
                kid = jws.extract_compact(token.encode()).protected.get("kid")
                if not isinstance(kid, str) or not await self._keys.refresh_if_unknown(kid):
                    raise Refused("unknown kid", MSG_UNKNOWN_KEY) from None
                decoded = jwt.decode(
                    token, await self._keys.verification_keys(), algorithms=ALGORITHMS
                )
        except JoseError as error:
            raise Refused(f"{type(error).__name__}") from None
        except (ValueError, TypeError) as error:  # belt and braces: garbage joserfc did not wrap
            raise Refused(f"undecodable: {type(error).__name__}") from None
        header = decoded.header
        kid = header.get("kid")
        if not isinstance(kid, str):
            # joserfc accepts a kid-less token when the set holds one key; we never mint those.
            raise Refused("no kid")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES:
            raise Refused("typ is not at+jwt")
        return decoded.claims, kid

    def _principal(self, claims: dict[str, Any], now: float) -> Principal:
        iss = claims.get("iss")
        if not (isinstance(iss, str) and self.accepts_issuer(iss)):
            raise wrong_issuer()
        aud = claims.get("aud")
        if not (aud == self.audience or (isinstance(aud, list) and self.audience in aud)):
            raise wrong_audience()
        exp = check_lifetime(claims, now, self.leeway_s, iat_required=True)
        if exp - required_number(claims, "iat") > self.max_lifetime_s + self.leeway_s:
            raise Refused("lifetime beyond the token TTL", MSG_TOO_LONG, "exp")
        team = string_claim(claims, "team")
        subject = string_claim(claims, "sub")
        client_id = string_claim(claims, "client_id")
        string_claim(claims, "jti")  # RFC 9068 §2.2 requires it; we mint it: absent means forged
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise Refused("scope is not a string")
        return Principal(
            team=team,
            subject=subject,
            client_id=client_id,
            scopes=frozenset(scope.split()),
            issuer=self.issuer,
            expires_at=exp,
        )


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
