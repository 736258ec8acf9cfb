"""Bearer token → Principal: which verifier a token goes to, and the cache in front of them.

Owns the routing by the token's unverified `iss` (our own issuer → the
built-in `TokenVerifier`; an issuer in the running policy's `auth.issuers` →
its `ExternalVerifier`; anything else → 401) and the cache that makes a
repeated token cost one dict lookup, and refusing tokens of our own clients
that were revoked since (checked on every call). The issuers are read from the policy
store at call time: a new policy version adds or removes issuers, and drops
every cached principal (its team may have come from that policy), without a
restart. A refresh of an issuer's keys that withdraws one of them drops that
issuer's cached principals: a token signed with a withdrawn key is verified
again (and refused), not served from the cache until its exp. Checking
signatures and claims is the verifiers' job.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable

import orjson

from gateway.auth.access_tokens import TokenVerifier
from gateway.auth.cache import DEFAULT_MAX_CACHED, TokenCache
from gateway.auth.claims import wrong_issuer
from gateway.auth.external import MAX_TOKEN_CHARS, ExternalVerifier
from gateway.auth.jwks import JwksCache
from gateway.auth.principal import Principal
from gateway.errors import AuthenticationFailed
from gateway.policy.compiled import Policy
from gateway.policy.store import PolicyStore

log = logging.getLogger(__name__)


def unverified_issuer(token: str) -> str | None:
    """The `iss` a JWT claims, read without any check (only to pick who verifies it)."""
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2 or not token.isascii():
        return None
    payload = token.split(".", 2)[1]
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):  # orjson.JSONDecodeError is a ValueError
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None


class Authenticator:
    """`services.verifier`: verifies any bearer token the gateway accepts.

    The cache (`TokenCache`) holds external principals; our own tokens are
    cached as None: only the route is remembered, and `TokenVerifier` (which
    has its own cache) stays the authority on them. `verifications` counts
    external tokens verified past the cache (refused ones included).
    """

    def __init__(
        self,
        builtin: TokenVerifier,
        policy: PolicyStore,
        jwks: JwksCache,
        *,
        is_revoked: Callable[[str], bool] = lambda client_id: False,
        clock: Callable[[], float] = time.time,
        max_cached: int = DEFAULT_MAX_CACHED,
    ) -> None:
        self.builtin = builtin
        self._is_revoked = is_revoked
        self.jwks = jwks
        self.verifications = 0
        self._policy_store = policy
        self._clock = clock
        self._cache: TokenCache[Principal | None] = TokenCache(clock, max_cached)
        self._policy: Policy | None = None
        self._external: dict[str, ExternalVerifier] = {}
        self._withdrawals = 0  # keys withdrawn so far: a verification across one is not cached
        jwks.on_withdrawn(self._forget_issuer)
        self._follow(policy.current())  # at start: the log names entries that cannot apply

    async def verify(self, token: str, policy: Policy | None = None) -> Principal:
        """The caller behind `token`, or AuthenticationFailed (401, token_sent=True).

        `policy` is the request's snapshot of the running policy (else the current one),
        so authentication and authorization read the same version."""
        principal = await self._principal_of(token, policy or self._policy_store.current())
        if (
            principal.client_id is not None
            and principal.issuer == self.builtin.issuer
            and self._is_revoked(principal.client_id)
        ):
            # Checked on every call, cached principals included: revocation holds within 2 s.
            raise AuthenticationFailed("The access token has been revoked.", token_sent=True)
        return principal

    async def _principal_of(self, token: str, policy: Policy) -> Principal:
        if policy is not self._policy:
            self._follow(policy)
        entry = self._cache.get(token)
        if entry is None:
            return await self._verify_uncached(token, policy)
        principal = entry[0]
        if principal is None:
            return await self.builtin.verify(token)
        return principal

    async def close(self) -> None:
        await self.jwks.close()

    def _follow(self, policy: Policy) -> None:
        """Adopt a new policy version: its issuers, and an empty cache."""
        external: dict[str, ExternalVerifier] = {}
        for index, spec in enumerate(policy.issuers):
            if spec.issuer == self.builtin.issuer:
                log.warning(
                    "auth.issuers[%d] (issuer %s) is this gateway's own issuer "
                    "(GATEWAY_ISSUER_URL): its tokens are verified with the gateway's own "
                    "keys, so this entry is ignored; remove it",
                    index,
                    spec.issuer,
                )
                continue
            if spec.issuer in external:
                # `policy check` refuses this; a version stored before it did may hold it.
                log.warning(
                    "auth.issuers[%d] (issuer %s) repeats an earlier entry's issuer; "
                    "only the first entry is used",
                    index,
                    spec.issuer,
                )
                continue
            external[spec.issuer] = ExternalVerifier(
                spec,
                self.jwks,
                team_of_client=policy.team_of_client,
                teams=policy.teams,  # a dict lookup per list value, once per token
                clock=self._clock,
                default_leeway_s=self.builtin.leeway_s,  # one setting for every issuer
            )
        self.jwks.retain(verifier.source for verifier in external.values())
        self._external = external
        self._cache.clear()
        self._policy = policy

    def _forget_issuer(self, issuer: str) -> None:
        """The issuer withdrew a key: its cached principals may rest on it, so go."""
        self._withdrawals += 1
        self._cache.forget(lambda principal: principal is not None and principal.issuer == issuer)

    async def _verify_uncached(self, token: str, policy: Policy) -> Principal:
        withdrawals = self._withdrawals
        issuer = unverified_issuer(token)
        verifier = self._external.get(issuer) if issuer is not None else None
        if verifier is None and (issuer is None or self.builtin.accepts_issuer(issuer)):
            # Garbage goes to the built-in verifier too: its refusal is the one callers know.
            principal = await self.builtin.verify(token)
            self._remember(token, None, principal.expires_at + self.builtin.leeway_s, policy)
            return principal
        if verifier is None:
            # Most often a token minted for another issuer URL (the CLI and the server
            # configured apart): say which claim, never which issuers we accept.
            log.debug("access token refused: unknown issuer")
            raise wrong_issuer().as_error()
        self.verifications += 1
        principal = await verifier.verify(token)
        if withdrawals == self._withdrawals:  # else its key may have gone while we verified
            self._remember(token, principal, principal.expires_at + verifier.leeway_s, policy)
        return principal

    def _remember(
        self, token: str, principal: Principal | None, deadline: float, policy: Policy
    ) -> None:
        if policy is not self._policy:
            return  # the policy changed while we verified: this principal may be stale
        self._cache.remember(token, principal, deadline)
