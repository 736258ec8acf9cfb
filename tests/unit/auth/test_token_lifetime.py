"""Our own tokens live no longer than the issuer mints them (gateway/auth/access_tokens.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.auth.access_tokens import TokenVerifier
from gateway.auth.keys import SigningKey, new_signing_key
from gateway.errors import AuthenticationFailed
from tests.support.clock import ManualClock
from tests.unit.auth.test_access_tokens import (
    AUDIENCE,
    ISSUER,
    NOW,
    FakeKeys,
    good_claims,
    mint,
    signed,
)

TTL_S = 600
LEEWAY_S = 30


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return new_signing_key(datetime.fromtimestamp(NOW, UTC))


def verifier(key: SigningKey) -> TokenVerifier:
    return TokenVerifier(
        ISSUER,
        AUDIENCE,
        FakeKeys(key),
        clock=ManualClock(NOW),
        leeway_s=LEEWAY_S,
        max_lifetime_s=TTL_S,
    )


@pytest.mark.parametrize("lifetime_s", [1, TTL_S, TTL_S + LEEWAY_S])
async def test_a_lifetime_within_the_token_ttl_verifies(key: SigningKey, lifetime_s: int) -> None:
    """exp - iat up to GATEWAY_TOKEN_TTL_S (+ leeway) is what the issuer mints: accepted."""
    assert (await verifier(key).verify(mint(key, ttl_s=lifetime_s))).team == "search"


@pytest.mark.parametrize("lifetime_s", [TTL_S + LEEWAY_S + 1, 10**9])
async def test_a_lifetime_beyond_the_token_ttl_is_refused(key: SigningKey, lifetime_s: int) -> None:
    """A token of our key claiming a longer life than we mint was forged: 401 (exp claim)."""
    with pytest.raises(AuthenticationFailed) as caught:
        await verifier(key).verify(mint(key, ttl_s=lifetime_s))
    assert caught.value.headers["www-authenticate"].endswith('error="invalid_token"')
    assert getattr(caught.value, "detail", None) == "exp claim"


async def test_a_token_without_iat_is_refused(key: SigningKey) -> None:
    """Without iat the lifetime cannot be bounded; we always mint it, so it is refused."""
    claims = {name: value for name, value in good_claims().items() if name != "iat"}
    claims["exp"] = int(NOW) + 60
    with pytest.raises(AuthenticationFailed):
        await verifier(key).verify(signed(key, claims))
