"""Tokens of a retired signing key stop at its cut-off (gateway/auth/access_tokens.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.auth.access_tokens import TokenVerifier
from gateway.auth.keys import SigningKey, new_signing_key
from gateway.errors import AuthenticationFailed
from tests.support.clock import ManualClock
from tests.unit.auth.test_access_tokens import AUDIENCE, ISSUER, NOW, TTL_S, FakeKeys, mint

CUTOFF = NOW + 60  # the key retires at NOW - TTL_S + 60 s, say: before its tokens expire


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return new_signing_key(datetime.fromtimestamp(NOW, UTC))


async def test_a_cached_token_stops_when_its_key_passes_its_cut_off(key: SigningKey) -> None:
    """A token verified (and cached) before its key retired is refused from the key's cut-off
    on, though its own exp is an hour away: a token forged with a leaked key ends there."""
    clock = ManualClock(NOW)
    keys = FakeKeys(key)
    checker = TokenVerifier(ISSUER, AUDIENCE, keys, clock=clock, leeway_s=0)
    token = mint(key)
    assert (await checker.verify(token)).team == "search"
    keys.cutoffs[key.kid] = CUTOFF  # `keys rotate` ran; the key set learned of it
    clock.now = CUTOFF - 1
    assert (await checker.verify(token)).team == "search"  # its tokens may still be alive
    clock.now = CUTOFF
    with pytest.raises(AuthenticationFailed):
        await checker.verify(token)
    assert token not in checker._cache.entries
    clock.now = CUTOFF + 1
    with pytest.raises(AuthenticationFailed):  # refused again, not served from anywhere
        await checker.verify(token)


async def test_a_new_token_of_a_key_past_its_cut_off_is_refused(key: SigningKey) -> None:
    """A token signed after the cut-off by a key the key set still holds is refused."""
    keys = FakeKeys(key)
    keys.cutoffs[key.kid] = CUTOFF
    checker = TokenVerifier(ISSUER, AUDIENCE, keys, clock=ManualClock(CUTOFF), leeway_s=0)
    with pytest.raises(AuthenticationFailed):
        await checker.verify(mint(key, now=CUTOFF))
    assert TTL_S > 60  # the token itself would still be valid: the key's cut-off refused it


RETIRED = NOW + 10  # `keys rotate` ran then; the last process stopped signing with it a bit later
SIGNED_UNTIL = RETIRED + 1


@pytest.mark.parametrize(
    ("issued_at", "leeway_s", "verifies"),
    [
        (NOW, 0, True),  # issued before the rotation: verifies until its cut-off
        (SIGNED_UNTIL, 0, True),  # a process that had not yet noticed the rotation
        (SIGNED_UNTIL + 1, 0, False),  # the key was no longer used: a leaked copy signed it
        (SIGNED_UNTIL + 30, 30, True),  # clocks may differ by the leeway
        (SIGNED_UNTIL + 31, 30, False),
        (SIGNED_UNTIL + 600, 30, False),
    ],
)
async def test_a_retired_key_verifies_only_what_it_signed_before_it_retired(
    key: SigningKey, issued_at: float, leeway_s: float, verifies: bool
) -> None:
    """Rotating is how a leaked key is stopped: a token that says it was issued after its
    key retired (minted with the leaked copy) is refused at once, not at the cut-off."""
    keys = FakeKeys(key)
    keys.cutoffs[key.kid] = RETIRED + TTL_S + 60
    keys.signed_until[key.kid] = SIGNED_UNTIL
    clock = ManualClock(issued_at + 1)
    checker = TokenVerifier(ISSUER, AUDIENCE, keys, clock=clock, leeway_s=leeway_s)
    token = mint(key, now=issued_at)
    if verifies:
        assert (await checker.verify(token)).team == "search"
    else:
        with pytest.raises(AuthenticationFailed):
            await checker.verify(token)
