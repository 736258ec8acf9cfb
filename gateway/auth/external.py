"""Access tokens of external OAuth issuers (Okta, Entra ID, Keycloak, …) verified into a Principal.

Owns one configured issuer's checks: the header (`alg` on the issuer's
allow-list, never `none` or HS*; `typ` absent, `JWT` or `at+jwt`), the key
chosen by `kid` from the issuer's JWKS (one refetch on an unknown `kid`, as
`JwksCache` allows), the signature (joserfc), then every claim explicitly
(`iss` exact, `aud`, `exp`, `nbf`, `iat` with the issuer's leeway), and the
mapping of claims to team, subject, client id and scopes. Claim mapping is
pure (`principal_from_claims`). When the token's key cannot be fetched (the
issuer down or its JWKS broken, the last fetch failed and the refetch is
rate-limited) the token is neither good nor bad: 503 `issuer_unavailable` with `retry-after`, so
clients retry instead of discarding it (unless its own claims already refuse
it: expired, another audience). A kid that keys fetched successfully within
the refetch interval lack is unknown: 401. Caching verified tokens and choosing the
issuer belong to `authenticator.py`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection, Container, Mapping
from typing import Any

import orjson
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key, OKPKey
from joserfc.jws import JWSRegistry

from gateway.auth.claims import (
    DEFAULT_LEEWAY_S,
    Refused,
    check_lifetime,
    wrong_audience,
    wrong_issuer,
)
from gateway.auth.jwks import JwksCache, KeySource, KeysUnavailable, knows_kid, select_key
from gateway.auth.principal import NO_TEAM, SCOPE_INVOKE, Principal
from gateway.errors import GatewayError, PermissionDenied
from gateway.policy.schema import ALLOWED_ALGORITHMS, IssuerSpec

log = logging.getLogger(__name__)

# Entra ID sends up to 200 group ids; our own tokens' 8 KiB cap would refuse those.
MAX_TOKEN_CHARS = 16 * 1024
ACCEPTED_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})  # Entra/Keycloak: JWT
CLIENT_ID_CLAIMS = ("client_id", "azp", "appid", "cid")  # RFC 9068, OIDC/Keycloak, Entra v1, Okta
MSG_NO_TEAM = "The access token's team is not known."
MSG_ISSUER_UNAVAILABLE = (
    "The signing keys of the access token's issuer could not be fetched, so the token "
    "could not be verified; it was not refused. Try again shortly."
)
MAX_NAMED_TEAMS = 5  # a refusal names this many of the teams a token maps to, then counts


class SeveralTeams(PermissionDenied):
    """403: a valid token whose team claim maps to more than one team of the policy.

    Billing one of them silently would charge a team the caller may not mean;
    the names come from the caller's own token (or the map of its values).
    """

    code = "ambiguous_team"

    def __init__(self, claim: str, teams: Collection[str]) -> None:
        names = sorted(teams)
        shown = ", ".join(names[:MAX_NAMED_TEAMS])
        if len(names) > MAX_NAMED_TEAMS:
            shown += f" and {len(names) - MAX_NAMED_TEAMS} more"
        super().__init__(
            f"The access token's {claim} claim maps to several teams ({shown}); "
            "the gateway needs exactly one."
        )
        self.detail = f"{claim} claim"


class IssuerUnavailable(GatewayError):
    """503: the token's key could not be fetched (IdP down or its JWKS broken, and the
    refetch is rate-limited), so the token could not be checked. Not a 401: clients drop
    a token refused with one.

    `retry-after` is when the JWKS cache may fetch again (at least 1 s): a retry
    sooner would be answered from the same failure without asking the issuer.
    """

    status = 503
    type = "api_error"
    code = "issuer_unavailable"

    def __init__(self, issuer: str, retry_in_s: float) -> None:
        wait = max(1, math.ceil(retry_in_s))
        super().__init__(MSG_ISSUER_UNAVAILABLE, headers={"retry-after": str(wait)})
        self.detail = f"keys of issuer {issuer} could not be fetched"


class _Registry(JWSRegistry):
    """The issuer's allow-list, lenient about unknown header members (Entra adds `x5t`, `nonce`).

    RFC 9864 deprecates the polymorphic `EdDSA` name and joserfc warns on every
    use; the signature is the same as the fully specified algorithm of the
    key's curve, so an `EdDSA` token is verified with that one.
    """

    def __init__(self, algorithms: Collection[str], eddsa_curve: str | None = None) -> None:
        super().__init__(algorithms=list(algorithms), strict_check_header=False)
        self._eddsa = JWSRegistry.algorithms[eddsa_curve] if eddsa_curve else None

    def get_alg(self, name: str) -> JWSAlgModel:
        if name == "EdDSA" and self._eddsa is not None and self.allowed and name in self.allowed:
            return self._eddsa
        return super().get_alg(name)


# --- pure claim mapping --------------------------------------------------------------


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The claim at a dotted path (`realm_access.roles`), else a literal key with dots.

    Auth0-style namespaced claims (`https://example.com/team`) contain dots: the whole
    path is tried as one key when the nested path finds nothing. The nested claim comes
    first, so a flat claim that merely spells the path cannot override it (probe p15).
    """
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return claims.get(path)
        value = value[part]
    return value


def client_id_of(claims: Mapping[str, Any], spec: IssuerSpec) -> str | None:
    """The OAuth client: `client_id_claim`, else the first of client_id, azp, appid, cid."""
    names = (spec.client_id_claim,) if spec.client_id_claim else CLIENT_ID_CLAIMS
    for name in names:
        value = claim_at(claims, name)
        if isinstance(value, str) and value:
            return value
    return None


def team_of_claims(
    claims: Mapping[str, Any],
    spec: IssuerSpec,
    team_of_client: Mapping[str, str],
    teams: Container[str] = frozenset(),
) -> str | None:
    """The team named by `team_claim`, else the policy's team of the token's client, else None.

    A string claim is the team's name, or with `team_map` the team its value
    maps to. A list claim (groups, roles) names the one team among its values:
    with `team_map` the teams its values map to, else the values that are teams
    of the policy (`teams`); other values are ignored, as groups hold many
    unrelated entries. Raises SeveralTeams when a list names more than one team:
    picking one would bill a team the caller may not mean.
    """
    value = claim_at(claims, spec.team_claim)
    team_map = spec.team_map
    team: str | None = None
    if isinstance(value, str) and value:
        team = team_map.get(value) if team_map is not None else value
    elif isinstance(value, list):
        named = _teams_in_list(value, team_map, teams)
        if len(named) > 1:
            raise SeveralTeams(spec.team_claim, named)
        team = next(iter(named), None)
    if team is None:
        client_id = client_id_of(claims, spec)
        team = team_of_client.get(client_id) if client_id is not None else None
    return team


def _teams_in_list(
    values: list[Any], team_map: Mapping[str, str] | None, teams: Container[str]
) -> set[str]:
    """The teams a list claim's string values name: through `team_map`, else by name."""
    strings = (v for v in values if isinstance(v, str))
    if team_map is not None:
        return {team_map[v] for v in strings if v in team_map}
    return {v for v in strings if v in teams}


def scopes_of(claims: Mapping[str, Any], spec: IssuerSpec) -> frozenset[str]:
    """What the token grants: its scopes within the issuer's `allowed_scopes`.

    Read from `scope_claim`, else `scope`, else `scp`: a space-separated string
    or a list of strings. A token carrying none (absent or empty) gets the
    issuer's `default_scopes`. Raises Refused when the claim has another type.
    """
    return requested_scopes(claims, spec) & frozenset(spec.allowed_scopes)


def requested_scopes(claims: Mapping[str, Any], spec: IssuerSpec) -> frozenset[str]:
    """The scopes the token carries (or the issuer's default), before `allowed_scopes`."""
    names = (spec.scope_claim,) if spec.scope_claim else ("scope", "scp")
    for name in names:
        value = claim_at(claims, name)
        if value is None:
            continue
        if isinstance(value, str):
            scopes = frozenset(value.split())
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            scopes = frozenset(s for v in value for s in v.split())
        else:
            raise Refused(f"{name} is neither a string nor a list of strings")
        if scopes:
            return scopes
    return frozenset(spec.default_scopes)


def leeway_of(spec: IssuerSpec, default_leeway_s: float) -> float:
    """The issuer's own `leeway_s`, else the gateway's (GATEWAY_TOKEN_LEEWAY_S)."""
    return spec.leeway_s if spec.leeway_s is not None else default_leeway_s


def check_registered(
    claims: dict[str, Any], spec: IssuerSpec, now: float, leeway_s: float
) -> float:
    """`iss` exact, `aud` one of the issuer's, then `exp`/`nbf`/`iat`; `exp`, or Refused."""
    if claims.get("iss") != spec.issuer:
        raise wrong_issuer()
    audiences = {spec.audience} if isinstance(spec.audience, str) else set(spec.audience)
    aud = claims.get("aud")
    aud_values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(isinstance(a, str) and a in audiences for a in aud_values):
        raise wrong_audience()
    return check_lifetime(claims, now, leeway_s, iat_required=False)


def principal_from_claims(
    claims: dict[str, Any],
    spec: IssuerSpec,
    team_of_client: Mapping[str, str],
    now: float,
    default_leeway_s: float = DEFAULT_LEEWAY_S,
    teams: Container[str] = frozenset(),
) -> Principal:
    """Check the registered claims and map the rest; raises Refused, or SeveralTeams (403).

    The leeway is the issuer's `leeway_s`, else `default_leeway_s` (GATEWAY_TOKEN_LEEWAY_S).
    `teams` are the policy's team names, which a list claim without `team_map` may name.
    """
    exp = check_registered(claims, spec, now, leeway_of(spec, default_leeway_s))
    client_id = client_id_of(claims, spec)
    subject = claim_at(claims, spec.subject_claim)
    if not isinstance(subject, str) or not subject:
        subject = client_id  # app-only tokens may lack a user claim such as `email`
    if subject is None:
        raise Refused(f"{spec.subject_claim} missing and no client id")
    scopes = scopes_of(claims, spec)  # before the team: every 401 outranks a 403
    team = team_of_claims(claims, spec, team_of_client, teams)
    if team is None:
        if SCOPE_INVOKE in scopes:  # only inference is bound to a team
            raise Refused("no team claim, no mapped value, no known client", MSG_NO_TEAM)
        team = NO_TEAM  # an admin's or a finance analyst's: in no team, as many are
    return Principal(
        team=team,
        subject=subject,
        client_id=client_id,
        scopes=scopes,
        issuer=spec.issuer,
        expires_at=exp,
    )


# --- one issuer's verifier -------------------------------------------------------------


class ExternalVerifier:
    """Verifies tokens of one configured issuer; built per policy version by the Authenticator."""

    def __init__(
        self,
        spec: IssuerSpec,
        jwks: JwksCache,
        *,
        team_of_client: Mapping[str, str],
        teams: Container[str],
        clock: Callable[[], float] = time.time,
        default_leeway_s: float = DEFAULT_LEEWAY_S,
    ) -> None:
        self.spec = spec
        self.leeway_s = leeway_of(spec, default_leeway_s)
        self.source = KeySource(spec.issuer, spec.jwks_uri)
        # Belt and braces: the schema already refuses none and HS*.
        self._algorithms = frozenset(spec.algorithms) & ALLOWED_ALGORITHMS
        self._jwks = jwks
        self._team_of_client = team_of_client
        self._teams = teams
        self._clock = clock
        self._registry = _Registry(self._algorithms)
        self._eddsa_registries = {c: _Registry(self._algorithms, c) for c in ("Ed25519", "Ed448")}

    async def verify(self, token: str) -> Principal:
        """The caller behind `token`, or AuthenticationFailed (401, token_sent=True).

        A valid token whose team claim maps to several teams is SeveralTeams (403);
        one that cannot be checked as its issuer's keys are unavailable, IssuerUnavailable.
        """
        try:
            claims = await self._decode(token)
            return principal_from_claims(
                claims,
                self.spec,
                self._team_of_client,
                self._clock(),
                self.leeway_s,
                self._teams,
            )
        except Refused as refused:
            log.debug("token of issuer %s refused: %s", self.spec.issuer, refused.reason)
            raise refused.as_error() from None

    async def _decode(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2 or not token.isascii():
            raise Refused("malformed or oversize")
        try:
            compact = jws.extract_compact(token.encode(), registry=self._registry)
        except (JoseError, ValueError, TypeError) as error:
            raise Refused(f"undecodable: {type(error).__name__}") from None
        header = compact.headers()
        alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise Refused(f"alg {alg!r} not allowed")  # before any key lookup or fetch
        if kid is not None and not isinstance(kid, str):
            raise Refused("kid is not a string")
        if "b64" in header:
            raise Refused("unencoded payload (RFC 7797) is not an access token")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES):
            raise Refused(f"typ {typ!r} is not an access token type")
        key = await self._key(alg, kid, compact.payload)
        registry = self._registry
        if isinstance(key, OKPKey):
            registry = self._eddsa_registries[key.curve_name]
        try:
            valid = jws.validate_compact(compact, key, registry=registry)
        except (JoseError, ValueError, TypeError) as error:
            raise Refused(f"signature check failed: {type(error).__name__}") from None
        if not valid:
            raise Refused("bad signature")
        return _claims_of(compact.payload)

    async def _key(self, alg: str, kid: str | None, payload: bytes) -> Key:
        try:
            return await self._fetched_key(alg, kid)
        except KeysUnavailable as unavailable:
            # Unverifiable now; but a token its own claims refuse would be refused anyway.
            claims = _claims_of(payload)
            check_registered(claims, self.spec, self._clock(), self.leeway_s)
            log.debug("token of issuer %s not checked: keys unavailable", self.spec.issuer)
            raise IssuerUnavailable(self.spec.issuer, unavailable.retry_in_s) from None

    async def _fetched_key(self, alg: str, kid: str | None) -> Key:
        keys = await self._jwks.keys(self.source)
        key = select_key(keys, kid, alg)
        if key is None and kid is not None and not knows_kid(keys, kid):
            # Maybe the issuer rotated since we fetched: keys fetched within the refetch
            # interval refuse its kid (401); older ones are refetched, rate-limited, and a
            # failed fetch leaves it unknown (503).
            fresh = await self._jwks.refetch_for_unknown_kid(self.source, kid)
            key = select_key(fresh, kid, alg)
        if key is None:
            raise Refused("unknown kid" if kid is not None else "no kid and several keys fit")
        return key


def _claims_of(payload: bytes) -> dict[str, Any]:
    try:
        claims = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise Refused("payload is not JSON") from None
    if not isinstance(claims, dict):
        raise Refused("payload is not a JSON object")
    return claims
