"""Telling a withdrawn signing key (`drops_a_key`), and forgetting what rested on it
(`TokenCache.forget`)."""

from __future__ import annotations

import pytest
from joserfc.jwk import ECKey, Key, RSAKey

from gateway.auth.cache import TokenCache
from gateway.auth.jwks import drops_a_key, parse_jwks
from gateway.errors import AuthenticationFailed
from tests.support.clock import ManualClock


def published(*keys: Key) -> tuple[Key, ...]:
    """The keys as the gateway holds them after fetching a JWKS that publishes `keys`."""
    return parse_jwks({"keys": [key.as_dict(private=False) for key in keys]})


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    return {
        "a": RSAKey.generate_key(2048, parameters={"kid": "a", "alg": "RS256"}),
        "a-again": RSAKey.generate_key(2048, parameters={"kid": "a", "alg": "RS256"}),
        "b": ECKey.generate_key("P-256", parameters={"kid": "b", "alg": "ES256"}),
        "c": ECKey.generate_key("P-256", parameters={"kid": "c", "alg": "ES256"}),
    }


@pytest.mark.parametrize(
    ("before", "after", "dropped"),
    [
        (["a", "b"], ["a", "b"], False),  # the same set
        (["a", "b"], ["b", "a"], False),  # reordered
        (["a", "b"], ["a", "b", "c"], False),  # a key published ahead of its use
        ([], ["a"], False),
        (["a", "b"], ["b"], True),  # withdrawn
        (["a", "b"], ["b", "c"], True),  # rotated out
        (["a"], [], True),  # every key gone
        (["a", "b"], ["a-again", "b"], True),  # kid a kept, its key replaced
    ],
)
def test_a_refresh_drops_a_key_when_one_it_held_is_gone_or_replaced(
    keys: dict[str, Key], before: list[str], after: list[str], dropped: bool
) -> None:
    old = published(*(keys[name] for name in before))
    new = published(*(keys[name] for name in after))
    assert drops_a_key(old, new) is dropped


def test_forgotten_entries_are_unknown_not_expired() -> None:
    """A forgotten token is looked up as unknown (verified again), never refused as expired;
    the other entries stay."""
    clock = ManualClock()
    cache: TokenCache[str | None] = TokenCache(clock)
    cache.remember("t1", "issuer-a", 2000.0)
    cache.remember("t2", "issuer-b", 2000.0)
    cache.remember("t3", None, 2000.0)
    cache.forget(lambda issuer: issuer == "issuer-a")
    assert cache.get("t1") is None
    assert cache.get("t2") == ("issuer-b", 2000.0)
    assert cache.get("t3") == (None, 2000.0)
    clock.advance(2000)
    with pytest.raises(AuthenticationFailed):  # past its deadline a kept one is expired
        cache.get("t2")
