"""The pure parts of the JWKS cache: discovery URLs, metadata, JWKS parsing, key choice, rate limit."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey

from gateway.auth.jwks import (
    discovered_jwks_uri,
    discovery_urls,
    key_fits,
    knows_kid,
    may_fetch,
    next_fetch_in,
    parse_jwks,
    select_key,
)
from gateway.policy.schema import ALLOWED_ALGORITHMS


@pytest.fixture(scope="module")
def published() -> dict[str, Any]:
    """A JWKS as an IdP publishes it: RSA, EC and OKP keys, public halves only."""
    keys: list[Key] = [
        RSAKey.generate_key(2048, parameters={"kid": "rsa", "alg": "RS256", "use": "sig"}),
        RSAKey.generate_key(2048, parameters={"kid": "rsa-any"}),
        ECKey.generate_key("P-256", parameters={"kid": "ec", "alg": "ES256"}),
        ECKey.generate_key("P-384", parameters={"kid": "ec384"}),
        OKPKey.generate_key("Ed25519", parameters={"kid": "ed", "alg": "EdDSA"}),
    ]
    return {"keys": [key.as_dict(private=False) for key in keys]}


def test_discovery_urls_for_a_bare_host() -> None:
    assert discovery_urls("https://idp.example.com/") == (
        "https://idp.example.com/.well-known/openid-configuration",
        "https://idp.example.com/.well-known/oauth-authorization-server",
    )


def test_discovery_urls_for_an_issuer_with_a_path() -> None:
    """OIDC appends; RFC 8414 inserts the well-known part before the path (then appended too)."""
    assert discovery_urls("https://kc.example.com/realms/gw") == (
        "https://kc.example.com/realms/gw/.well-known/openid-configuration",
        "https://kc.example.com/.well-known/oauth-authorization-server/realms/gw",
        "https://kc.example.com/realms/gw/.well-known/oauth-authorization-server",
    )


def test_discovered_issuer_must_equal_the_configured_one() -> None:
    document = {"issuer": "https://idp.example.com/", "jwks_uri": "https://idp.example.com/keys"}
    assert (
        discovered_jwks_uri(document, "https://idp.example.com/") == "https://idp.example.com/keys"
    )
    with pytest.raises(ValueError, match="names issuer"):
        discovered_jwks_uri(document, "https://idp.example.com")
    with pytest.raises(ValueError, match="jwks_uri"):
        discovered_jwks_uri({"issuer": "x", "jwks_uri": "file:///etc/passwd"}, "x")
    with pytest.raises(ValueError):
        discovered_jwks_uri(["not", "an", "object"], "x")


def test_parse_jwks_keeps_verification_keys(published: dict[str, Any]) -> None:
    assert [key.kid for key in parse_jwks(published)] == ["rsa", "rsa-any", "ec", "ec384", "ed"]


def test_parse_jwks_skips_symmetric_encryption_and_broken_entries(
    published: dict[str, Any],
) -> None:
    """An `oct` key would let anyone holding the JWKS sign; enc keys and junk are skipped too."""
    rsa = published["keys"][0]
    document = {
        "keys": [
            OctKey.generate_key(256, parameters={"kid": "hmac"}).as_dict(private=True),
            {**rsa, "kid": "enc", "use": "enc"},
            {**rsa, "kid": "wrap", "key_ops": ["wrapKey"]},
            {**rsa, "kid": 7},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            "not an object",
            {**rsa, "kid": "ok", "issuer": "https://login.example/", "x5t": "abc"},
        ]
    }
    assert [key.kid for key in parse_jwks(document)] == ["ok"]


def test_parse_jwks_drops_private_members(published: dict[str, Any]) -> None:
    private = RSAKey.generate_key(2048, parameters={"kid": "leaky"}).as_dict(private=True)
    (key,) = parse_jwks({"keys": [private]})
    assert not key.is_private


@pytest.mark.parametrize("document", [{}, {"keys": "x"}, [], "text", None])
def test_parse_jwks_refuses_what_is_not_a_jwk_set(document: Any) -> None:
    with pytest.raises(ValueError, match="not a JWK set"):
        parse_jwks(document)


@pytest.mark.parametrize(
    ("kid", "alg", "expected"),
    [
        ("rsa", "RS256", "rsa"),
        ("rsa", "PS256", None),  # the JWK says RS256 only
        ("rsa-any", "PS256", "rsa-any"),
        ("rsa-any", "RS512", "rsa-any"),
        ("ec", "ES256", "ec"),
        ("ec", "ES384", None),
        ("ec384", "ES384", "ec384"),
        ("ed", "EdDSA", "ed"),
        ("rsa", "ES256", None),
        ("ec", "RS256", None),
        ("rsa", "HS256", None),
        ("rsa", "none", None),
        ("missing", "RS256", None),
    ],
)
def test_select_key_by_kid_type_curve_and_alg(
    published: dict[str, Any], kid: str, alg: str, expected: str | None
) -> None:
    key = select_key(parse_jwks(published), kid, alg)
    assert (key.kid if key else None) == expected


def test_select_key_without_kid_only_when_one_key_fits(published: dict[str, Any]) -> None:
    keys = parse_jwks(published)
    selected = select_key(keys, None, "ES256")
    assert selected is not None and selected.kid == "ec"
    assert select_key(keys, None, "RS256") is None  # two RSA keys fit


def test_key_fits_and_knows_kid(published: dict[str, Any]) -> None:
    keys = parse_jwks(published)
    assert knows_kid(keys, "rsa") and not knows_kid(keys, "other")
    assert not any(key_fits(key, "HS256") for key in keys)


@pytest.mark.parametrize(
    ("last", "now", "allowed"),
    [(None, 0.0, True), (100.0, 105.0, False), (100.0, 109.99, False), (100.0, 110.0, True)],
)
def test_may_fetch_once_per_interval(last: float | None, now: float, allowed: bool) -> None:
    assert may_fetch(last, now, 10.0) is allowed


@pytest.mark.parametrize(
    ("last", "now", "wait"),
    [(None, 0.0, 0.0), (100.0, 100.0, 10.0), (100.0, 105.0, 5.0), (100.0, 130.0, 0.0)],
)
def test_next_fetch_in_is_when_may_fetch_allows_one(
    last: float | None, now: float, wait: float
) -> None:
    """What an issuer_unavailable's retry-after is made of: never past the interval."""
    assert next_fetch_in(last, now, 10.0) == wait
    assert may_fetch(last, now + wait, 10.0)
    assert next_fetch_in(last, 50.0, 10.0) <= 10.0  # a clock behind the attempt


_RSA_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
_PUBLIC_RSA = RSAKey.generate_key(2048).as_dict(private=False)


@given(named=st.sampled_from(_RSA_ALGS), used=st.sampled_from(sorted(ALLOWED_ALGORITHMS)))
def test_a_jwk_naming_its_alg_verifies_only_that_alg(named: str, used: str) -> None:
    """RFC 7517 §4.4 / RFC 8725 §3.1: a key published with `alg` fits that alg alone;
    without `alg` any RSA algorithm the issuer allows fits."""
    (with_alg, without_alg) = parse_jwks(
        {"keys": [{**_PUBLIC_RSA, "kid": "a", "alg": named}, {**_PUBLIC_RSA, "kid": "b"}]}
    )
    assert key_fits(with_alg, used) == (used == named)
    assert select_key([with_alg], "a", used) is (with_alg if used == named else None)
    assert select_key([with_alg], None, used) is (with_alg if used == named else None)
    assert key_fits(without_alg, used) == (used in _RSA_ALGS)


def _rsa_entry(bits: int, exponent: int = 65537) -> dict[str, Any]:
    """A published RSA key of `bits` (the modulus only need be that long: never imported)."""
    modulus = (1 << (bits - 1)) | 1

    def b64(number: int) -> str:
        raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    kid = f"k{bits}e{exponent}"
    return {"kty": "RSA", "n": b64(modulus), "e": b64(exponent), "kid": kid, "use": "sig"}


def test_parse_jwks_skips_weak_rsa_keys() -> None:
    """RFC 7518 §3.3: RS* keys are 2048 bits or more (probe p15: a 1024- or 512-bit key
    was trusted, and whoever factors one signs as the issuer); e = 3 is skipped too."""
    short, tiny, low_exponent = _rsa_entry(1024), _rsa_entry(512), _rsa_entry(2048, 3)
    assert parse_jwks({"keys": [short, tiny, low_exponent]}) == ()
    strong = RSAKey.generate_key(2048, parameters={"kid": "ok"}).as_dict(private=False)
    assert [key.kid for key in parse_jwks({"keys": [short, strong]})] == ["ok"]
