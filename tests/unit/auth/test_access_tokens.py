"""Minting and verifying the built-in issuer's access tokens (gateway/auth/access_tokens.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from gateway.auth.access_tokens import TokenVerifier, mint_token
from gateway.auth.claims import (
    MSG_EXPIRED,
    MSG_INVALID,
    MSG_UNKNOWN_KEY,
    MSG_WRONG_AUDIENCE,
    MSG_WRONG_ISSUER,
    InvalidToken,
)
from gateway.auth.keys import SigningKey, new_signing_key
from gateway.auth.principal import Principal
from gateway.errors import AuthenticationFailed
from tests.support.clock import ManualClock

ISSUER = "https://gateway.test"
AUDIENCE = "llm-gateway"
NOW = 1_800_000_000.0
TTL_S = 3600


class FakeKeys:
    """An in-memory key source; `pending` keys appear only after a refresh."""

    def __init__(self, *keys: SigningKey) -> None:
        self.known = list(keys)
        self.pending: list[SigningKey] = []
        self.refreshes: list[str] = []
        self.cutoffs: dict[str, float] = {}  # retired kid → when it stops verifying
        self.signed_until: dict[str, float] = {}  # retired kid → when it last signed

    async def verification_keys(self) -> KeySet:
        return KeySet([RSAKey.import_key(k.public_jwk()) for k in self.known])

    async def refresh_if_unknown(self, kid: str) -> bool:
        self.refreshes.append(kid)
        self.known += self.pending
        self.pending = []
        return any(k.kid == kid for k in self.known)

    def retires_at(self, kid: str) -> float | None:
        return self.cutoffs.get(kid)

    def signs_until(self, kid: str) -> float | None:
        return self.signed_until.get(kid)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return new_signing_key(datetime.fromtimestamp(NOW, UTC))


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return new_signing_key(datetime.fromtimestamp(NOW, UTC))


def mint(key: SigningKey, **overrides: Any) -> str:
    args: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "team": "search",
        "subject": "client-1",
        "client_id": "client-1",
        "scopes": ["gateway:invoke", "gateway:admin"],
        "ttl_s": TTL_S,
        "now": NOW,
    }
    args.update(overrides)
    return mint_token(key, **args)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: dict[str, Any]) -> str:
    return b64(json.dumps(obj).encode())


def good_claims() -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "sub": "client-1",
        "aud": AUDIENCE,
        "exp": int(NOW) + TTL_S,
        "iat": int(NOW),
        "nbf": int(NOW),
        "jti": "j-1",
        "client_id": "client-1",
        "scope": "gateway:invoke",
        "team": "search",
    }


def signed(key: SigningKey, claims: dict[str, Any], **header: Any) -> str:
    """Sign arbitrary claims with a real key (forging everything but the signature)."""
    head = {"typ": "at+jwt", "alg": "RS256", "kid": key.kid, **header}
    # Drop the key's own "alg" so joserfc lets it sign with any RSA algorithm.
    jwk = {k: v for k, v in key.private_key.as_dict(private=True).items() if k != "alg"}
    return jwt.encode(head, claims, RSAKey.import_key(jwk), algorithms=[head["alg"]])


def verifier(*keys: SigningKey, clock: Callable[[], float] | None = None) -> TokenVerifier:
    return TokenVerifier(ISSUER, AUDIENCE, FakeKeys(*keys), clock=clock or ManualClock(NOW))


async def test_minted_token_verifies_into_principal(key: SigningKey) -> None:
    """A token we mint comes back as the team, subject, client and scopes it was minted for."""
    token = mint(key)
    principal = await verifier(key).verify(token)
    assert principal == Principal(
        team="search",
        subject="client-1",
        client_id="client-1",
        scopes=frozenset({"gateway:invoke", "gateway:admin"}),
        issuer=ISSUER,
        expires_at=NOW + TTL_S,
    )


def test_minted_token_has_rfc9068_header_and_claims(key: SigningKey) -> None:
    """Header typ at+jwt, RS256 and kid; every RFC 9068 claim plus team and nbf."""
    token = jwt.decode(mint(key), KeySet([key.private_key]), algorithms=["RS256"])
    assert token.header == {"typ": "at+jwt", "alg": "RS256", "kid": key.kid}
    claims = token.claims
    assert set(claims) == {
        "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "team"
    }  # fmt: skip
    assert claims["scope"] == "gateway:admin gateway:invoke"
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (NOW, NOW, NOW + TTL_S)
    assert mint(key) != mint(key), "jti makes every token unique"


def _hs256_with_public_pem(key: SigningKey) -> str:
    signing_input = segment({"typ": "at+jwt", "alg": "HS256", "kid": key.kid}) + "."
    signing_input += segment(good_claims())
    pem = key.private_key.as_pem(private=False)
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def _tampered(key: SigningKey) -> str:
    header, _, signature = mint(key).split(".")
    return f"{header}.{segment({**good_claims(), 'team': 'finance'})}.{signature}"


def _without(name: str) -> Callable[[SigningKey, SigningKey], str]:
    def build(key: SigningKey, _other: SigningKey) -> str:
        claims = good_claims()
        del claims[name]
        return signed(key, claims)

    return build


def _with(**changes: Any) -> Callable[[SigningKey, SigningKey], str]:
    return lambda key, _other: signed(key, {**good_claims(), **changes})


# name: (build the token, message the caller sees, reason in the debug log)
ATTACKS: dict[str, tuple[Callable[[SigningKey, SigningKey], str], str, str]] = {
    "garbage": (lambda k, o: "not-a-token", MSG_INVALID, "malformed"),
    "empty": (lambda k, o: "", MSG_INVALID, "malformed"),
    "three garbage segments": (lambda k, o: "a.b.c", MSG_INVALID, "DecodeError"),
    "oversize": (lambda k, o: "a." + "b" * 100_000 + ".c", MSG_INVALID, "malformed"),
    "non-ascii": (lambda k, o: "é.é.é", MSG_INVALID, "malformed"),
    "alg none": (
        lambda k, o: (
            f"{segment({'typ': 'at+jwt', 'alg': 'none', 'kid': k.kid})}.{segment(good_claims())}."
        ),
        MSG_INVALID,
        "UnsupportedAlgorithmError",
    ),
    "HS256 signed with the public key": (
        lambda k, o: _hs256_with_public_pem(k),
        MSG_INVALID,
        "UnsupportedAlgorithmError",
    ),
    "RS384 (not on the allow-list)": (
        lambda k, o: signed(k, good_claims(), alg="RS384"),
        MSG_INVALID,
        "UnsupportedAlgorithmError",
    ),
    "expired": (lambda k, o: mint(k, now=NOW - TTL_S - 31), MSG_EXPIRED, "expired"),
    "nbf in the future": (
        _with(nbf=int(NOW) + 3600),
        "The access token is not valid yet.",
        "nbf in the future",
    ),
    "iat in the future": (
        _with(iat=int(NOW) + 3600),
        "The access token is not valid yet.",
        "iat in the future",
    ),
    "wrong audience": (
        lambda k, o: mint(k, audience="someone-else"),
        MSG_WRONG_AUDIENCE,
        "wrong audience",
    ),
    "wrong issuer": (
        lambda k, o: mint(k, issuer="https://evil.test"),
        MSG_WRONG_ISSUER,
        "wrong issuer",
    ),
    "issuer with trailing slash": (
        lambda k, o: mint(k, issuer=ISSUER + "/"),
        MSG_WRONG_ISSUER,
        "wrong issuer",
    ),
    "unknown kid": (lambda k, o: mint(o), MSG_UNKNOWN_KEY, "unknown kid"),
    "our kid, another key": (
        lambda k, o: signed(o, good_claims(), kid=k.kid),
        MSG_INVALID,
        "BadSignatureError",
    ),
    "tampered payload": (lambda k, o: _tampered(k), MSG_INVALID, "BadSignatureError"),
    "missing team": (_without("team"), MSG_INVALID, "team missing"),
    "team not a string": (_with(team=["search"]), MSG_INVALID, "team missing"),
    "missing sub": (_without("sub"), MSG_INVALID, "sub missing"),
    "missing client_id": (_without("client_id"), MSG_INVALID, "client_id missing"),
    "missing jti": (_without("jti"), MSG_INVALID, "jti missing"),
    "missing exp": (_without("exp"), MSG_INVALID, "exp missing"),
    "exp not a number": (_with(exp="tomorrow"), MSG_INVALID, "exp is not a number"),
    "exp is a bool": (_with(exp=True), MSG_INVALID, "exp is not a number"),
    "scope not a string": (_with(scope=["gateway:admin"]), MSG_INVALID, "scope is not a string"),
    "typ JWT (not an access token)": (
        lambda k, o: signed(k, good_claims(), typ="JWT"),
        MSG_INVALID,
        "typ is not at+jwt",
    ),
    "no kid": (
        lambda k, o: jwt.encode(
            {"typ": "at+jwt", "alg": "RS256"}, good_claims(), k.private_key, algorithms=["RS256"]
        ),
        MSG_INVALID,
        "no kid",
    ),
}


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
async def test_attack_tokens_are_refused(
    attack: str, key: SigningKey, other_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    """Each forged, stale or misdirected token gets 401 invalid_token with a short message."""
    build, message, reason = ATTACKS[attack]
    token = build(key, other_key)
    with (
        caplog.at_level(logging.DEBUG, "gateway.auth.access_tokens"),
        pytest.raises(AuthenticationFailed) as caught,
    ):
        await verifier(key).verify(token)
    assert reason in caplog.text, "refused, but by a different check than the one under test"
    error = caught.value
    assert error.status == 401
    assert error.message == message
    assert error.headers["www-authenticate"] == 'Bearer realm="llm-gateway", error="invalid_token"'
    assert ISSUER not in error.message and AUDIENCE not in error.message  # never what we expect


@pytest.mark.parametrize(
    ("attack", "detail"),
    [
        ("wrong issuer", "iss claim"),
        ("wrong audience", "aud claim"),
        ("expired", "exp claim"),
        ("tampered payload", None),  # signatures and keys stay vague
        ("unknown kid", None),
    ],
)
async def test_a_refused_claim_is_named_for_the_access_line(
    attack: str, detail: str | None, key: SigningKey, other_key: SigningKey
) -> None:
    with pytest.raises(InvalidToken) as caught:
        await verifier(key).verify(ATTACKS[attack][0](key, other_key))
    assert caught.value.detail == detail


async def test_leeway_accepts_slightly_expired_token(key: SigningKey) -> None:
    """A token expired 10 s ago still passes with the default 30 s leeway (clock skew)."""
    principal = await verifier(key, clock=ManualClock(NOW + TTL_S + 10)).verify(mint(key))
    assert principal.team == "search"


async def test_audience_list_containing_ours_is_accepted(key: SigningKey) -> None:
    """`aud` may be a list; it must contain this gateway's audience."""
    token = signed(key, {**good_claims(), "aud": ["other", AUDIENCE]})
    assert (await verifier(key).verify(token)).team == "search"


async def test_unknown_kid_refreshes_keys_once_then_verifies(
    key: SigningKey, other_key: SigningKey
) -> None:
    """A token from a key added after start (rotation elsewhere) verifies after one refresh."""
    keys = FakeKeys(key)
    keys.pending = [other_key]
    checker = TokenVerifier(ISSUER, AUDIENCE, keys, clock=ManualClock(NOW))
    principal = await checker.verify(mint(other_key))
    assert principal.team == "search"
    assert keys.refreshes == [other_key.kid]


async def test_cached_token_is_refused_after_expiry(key: SigningKey) -> None:
    """A cached principal is served only until exp + leeway, then the token is refused."""
    clock = ManualClock(NOW)
    keys = FakeKeys(key)
    checker = TokenVerifier(ISSUER, AUDIENCE, keys, clock=clock, leeway_s=30)
    token = mint(key)
    first = await checker.verify(token)
    keys.known = []  # from here on only the cache can accept the token
    clock.now = NOW + TTL_S + 30
    assert await checker.verify(token) is first
    clock.now = NOW + TTL_S + 31
    with pytest.raises(AuthenticationFailed) as caught:
        await checker.verify(token)
    assert caught.value.message == MSG_EXPIRED


async def test_cache_stays_bounded(key: SigningKey) -> None:
    """Many distinct tokens never grow the cache beyond its limit; new ones still verify."""
    checker = TokenVerifier(ISSUER, AUDIENCE, FakeKeys(key), clock=ManualClock(NOW), max_cached=8)
    tokens = [mint(key, subject=f"s{i}") for i in range(20)]
    for token in tokens:
        await checker.verify(token)
        assert len(checker._cache.entries) <= 8
    assert (await checker.verify(tokens[0])).subject == "s0"


async def test_expired_entries_are_evicted_before_live_ones(key: SigningKey) -> None:
    """When the cache is full, expired entries make room first."""
    clock = ManualClock(NOW)
    checker = TokenVerifier(ISSUER, AUDIENCE, FakeKeys(key), clock=clock, max_cached=3)
    short = [mint(key, subject=f"short{i}", ttl_s=10) for i in range(2)]
    long = mint(key, subject="long")
    for token in [*short, long]:
        await checker.verify(token)
    clock.now = NOW + 100
    await checker.verify(mint(key, subject="new", now=NOW + 100))
    assert len(checker._cache.entries) == 2
    assert long in checker._cache.entries
    assert not set(short) & checker._cache.entries.keys()


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT", "Application/At+Jwt"])
async def test_both_forms_of_the_access_token_type_verify(key: SigningKey, typ: str) -> None:
    """RFC 9068 §4: `at+jwt` or `application/at+jwt`; media types are case-insensitive."""
    principal = await verifier(key).verify(signed(key, good_claims(), typ=typ))
    assert principal.team == "search"


@pytest.mark.parametrize("typ", ["JWT", "at+jwt ", "application/jwt", "x-at+jwt", ""])
async def test_any_other_type_is_refused(key: SigningKey, typ: Any) -> None:
    with pytest.raises(AuthenticationFailed):
        await verifier(key).verify(signed(key, good_claims(), typ=typ))
