"""JWT claim checks shared by our own and external issuers' verifiers. Pure; no I/O.

A failed check raises `Refused`: `reason` goes to the debug log, `message` to
the caller. The message stays vague about signatures, but names the
claim when `iss`, `aud` or the token's time failed, since that is what an
operator fixes (a CLI minting with another issuer URL, a client asking for the
wrong audience), and says so when our own token's key is unknown here (minted against
another database); it never shows the values the gateway expected. Verifiers
raise `InvalidToken`, whose `detail` (the failed claim) is for the access line.
"""

from __future__ import annotations

import math
from typing import Any

from gateway.errors import AuthenticationFailed
from gateway.settings import DEFAULT_TOKEN_LEEWAY_S

# Clock skew tolerated on exp/nbf/iat, ours and external issuers' alike;
# GATEWAY_TOKEN_LEEWAY_S sets it, an issuer's `leeway_s` overrides it for that issuer.
DEFAULT_LEEWAY_S = DEFAULT_TOKEN_LEEWAY_S

MSG_INVALID = "The access token is invalid."
MSG_WRONG_ISSUER = "The access token's issuer (iss claim) is not one this gateway accepts."
MSG_WRONG_AUDIENCE = "The access token's audience (aud claim) is not this gateway."
MSG_EXPIRED = "The access token has expired."
MSG_NOT_YET_VALID = "The access token is not valid yet."
# Our own token whose `kid` is none of this gateway's keys: nearly always minted against
# another database (`gateway token` run elsewhere). Kids are public (the JWKS), so naming
# the cause tells a caller nothing it could not read there.
MSG_UNKNOWN_KEY = (
    "The access token is invalid: it is signed by a key this gateway does not know (its "
    "kid is not one of this gateway's signing keys). Was it minted against another "
    "gateway's database? Mint it where this gateway's database is, or get one from its "
    "/oauth/token."
)


class Refused(Exception):
    """A token refused by a verifier; rendered as 401 invalid_token by its caller.

    `claim` names the registered claim that failed (`iss`, `aud`, `exp`, …), if one did.
    """

    def __init__(self, reason: str, message: str = MSG_INVALID, claim: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message
        self.claim = claim

    def as_error(self) -> InvalidToken:
        return InvalidToken(self.message, detail=f"{self.claim} claim" if self.claim else None)


class InvalidToken(AuthenticationFailed):
    """401 for a token that was sent and refused; `detail` says which claim, for the access line."""

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message, token_sent=True)
        self.detail = detail


def wrong_issuer() -> Refused:
    return Refused("wrong issuer", MSG_WRONG_ISSUER, "iss")


def wrong_audience() -> Refused:
    return Refused("wrong audience", MSG_WRONG_AUDIENCE, "aud")


def number_claim(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # bool is an int; json.loads accepts NaN and Infinity.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Refused(f"{name} is not a number")
    return float(value)


def required_number(claims: dict[str, Any], name: str) -> float:
    value = number_claim(claims, name)
    if value is None:
        raise Refused(f"{name} missing")
    return value


def string_claim(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise Refused(f"{name} missing or not a string")
    return value


def check_lifetime(
    claims: dict[str, Any], now: float, leeway_s: float, *, iat_required: bool
) -> float:
    """Check `exp` (required), `nbf` and `iat` against `now` with leeway; return `exp`."""
    exp = required_number(claims, "exp")
    if now > exp + leeway_s:
        raise Refused("expired", MSG_EXPIRED, "exp")
    nbf = number_claim(claims, "nbf")
    if nbf is not None and now + leeway_s < nbf:
        raise Refused("nbf in the future", MSG_NOT_YET_VALID, "nbf")
    iat = required_number(claims, "iat") if iat_required else number_claim(claims, "iat")
    if iat is not None and now + leeway_s < iat:
        raise Refused("iat in the future", MSG_NOT_YET_VALID, "iat")
    return exp
