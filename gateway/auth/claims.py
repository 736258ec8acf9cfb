"""JWT claim checks shared by our own and external issuers' verifiers. Pure; no I/O.

A failed check raises `Refused`: `reason` goes to the debug log, `message` to
the caller (always vague: which check failed is not the caller's business).
"""

from __future__ import annotations

import math
from typing import Any

MSG_INVALID = "The access token is invalid."
MSG_EXPIRED = "The access token has expired."
MSG_NOT_YET_VALID = "The access token is not valid yet."


class Refused(Exception):
    """A token refused by a verifier; rendered as 401 invalid_token by its caller."""

    def __init__(self, reason: str, message: str = MSG_INVALID) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


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
        raise Refused("expired", MSG_EXPIRED)
    nbf = number_claim(claims, "nbf")
    if nbf is not None and now + leeway_s < nbf:
        raise Refused("nbf in the future", MSG_NOT_YET_VALID)
    iat = required_number(claims, "iat") if iat_required else number_claim(claims, "iat")
    if iat is not None and now + leeway_s < iat:
        raise Refused("iat in the future")
    return exp
