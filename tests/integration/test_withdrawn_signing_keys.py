"""An external issuer withdraws a signing key: tokens it signed stop working, cached or not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from joserfc.jws import JWSRegistry

from tests.support.clock import ManualClock
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.idp import FakeIdP, b64url, json_segment

AUDIENCE = "probe-aud"
POLICY = """
providers:
  demo: {{type: mock}}
models:
  m: {{deployments: [{{provider: demo, model: mock-1}}]}}
teams:
  teama: {{models: [m]}}
auth:
  issuers:
    - {{issuer: "{issuer}", audience: {audience}, team_claim: team}}
"""
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
FAR_EXP = 1_000_000_000_000  # the year 33658: what a forger holding the key would choose


@dataclass
class Setup:
    gw: RunningGateway
    idp: FakeIdP
    clock: ManualClock  # the JWKS cache's: moves past the refetch interval and key age
    http: aiohttp.ClientSession

    async def post(self, token: str) -> tuple[int, Any]:
        async with self.http.post(
            f"{self.gw.base_url}/chat/completions",
            json=CHAT,
            headers={"authorization": f"Bearer {token}"},
        ) as response:
            return response.status, await response.json(content_type=None)

    def token(self, alg: str = "RS256", **claims: Any) -> str:
        return self.idp.mint({"aud": AUDIENCE, "team": "teama", **claims}, alg=alg)


@pytest.fixture
async def s(tmp_path: Path) -> AsyncIterator[Setup]:
    async with FakeIdP() as idp:
        policy = POLICY.format(issuer=idp.issuer, audience=AUDIENCE)
        async with running_gateway(tmp_path, policy) as gw:
            clock = ManualClock()
            gw.services.verifier.jwks.clock = clock
            async with aiohttp.ClientSession() as http:
                yield Setup(gw, idp, clock, http)


def signed_with_withdrawn_key(idp: FakeIdP, kid: str, key: Any, **claims: Any) -> str:
    """A token signed by hand with a key the IdP no longer holds (as its thief would)."""
    header = {"typ": "at+jwt", "alg": "RS256", "kid": kid}
    body = {**idp.claims(), "aud": AUDIENCE, "team": "teama", **claims}
    signing_input = f"{json_segment(header)}.{json_segment(body)}"
    signature = JWSRegistry.algorithms["RS256"].sign(signing_input.encode(), key)
    return f"{signing_input}.{b64url(signature)}"


def assert_invalid(status: int, body: Any) -> None:
    """401 invalid_token, as for a bad signature: not 'expired', which it is not."""
    assert status == 401, body
    assert body["error"]["code"] == "invalid_api_key"
    assert body["error"]["message"] == "The access token is invalid."


async def test_a_cached_token_of_a_withdrawn_kid_is_refused_after_the_unknown_kid_refetch(
    s: Setup,
) -> None:
    """The probe: once a refetch no longer finds the kid, its cached token is 401; tokens of
    the issuer's other kids, its new kid, and the gateway's own tokens keep working."""
    withdrawn_kid = s.idp.kid("RS256")
    withdrawn_key = s.idp.key(withdrawn_kid)
    stale = s.token(sub="stale-user", exp=FAR_EXP)
    other_kid = s.token("ES256", sub="es-user")
    own = await s.gw.token(team="teama")
    for token in (stale, other_kid, own):
        status, body = await s.post(token)
        assert status == 200, body

    s.idp.rotate("RS256", keep_old=False)  # the IdP drops the key from its JWKS
    s.clock.advance(11)
    fetches = s.idp.jwks_requests
    unknown_kid = s.idp.mint({"aud": AUDIENCE, "team": "teama"}, kid="never-published")
    assert_invalid(*await s.post(unknown_kid))
    assert s.idp.jwks_requests == fetches + 1  # the gateway's keys now lack the kid

    assert_invalid(*await s.post(stale))
    assert_invalid(*await s.post(stale))  # and stays refused: not cached as good again
    assert_invalid(*await s.post(signed_with_withdrawn_key(s.idp, withdrawn_kid, withdrawn_key)))
    for token in (other_kid, s.token("ES256"), s.token(), own):
        status, body = await s.post(token)
        assert status == 200, body
    assert s.idp.jwks_requests == fetches + 1


async def test_a_cached_token_of_a_withdrawn_kid_is_refused_after_the_background_refresh(
    s: Setup,
) -> None:
    """Keys older than an hour are refreshed in the background; when that refresh lacks the
    kid, its cached token is refused too, and a cached token of a kept kid keeps working."""
    stale = s.token(sub="stale-user", exp=FAR_EXP)
    kept = s.token("ES256", sub="es-user")
    for token in (stale, kept):
        status, body = await s.post(token)
        assert status == 200, body
    verifications = s.gw.services.verifier.verifications

    s.idp.rotate("RS256", keep_old=False)
    s.clock.advance(3601)
    fetches = s.idp.jwks_requests
    # A token not cached yet reads the keys: served with them, it starts the refresh.
    status, body = await s.post(s.token("ES256"))
    assert status == 200, body
    for _ in range(500):  # until the refresh has landed (10 s at most)
        status, body = await s.post(stale)
        if status != 200:
            break
        await asyncio.sleep(0.02)
    assert_invalid(status, body)
    assert s.idp.jwks_requests == fetches + 1
    status, body = await s.post(kept)  # verified again (its issuer's cache went), still good
    assert status == 200, body
    assert s.gw.services.verifier.verifications > verifications


async def test_a_refresh_that_keeps_every_key_keeps_the_cache(s: Setup) -> None:
    """A rotation that only adds a key drops nothing: a repeated token is still not verified
    again."""
    token = s.token()
    assert (await s.post(token))[0] == 200
    verifications = s.gw.services.verifier.verifications
    s.idp.rotate("RS256")  # the old key stays published
    s.clock.advance(11)
    status, body = await s.post(s.token())  # the new kid: one refetch
    assert status == 200, body
    assert (await s.post(token))[0] == 200
    assert s.gw.services.verifier.verifications == verifications + 1


async def test_a_jwk_set_with_no_keys_withdraws_nothing(s: Setup) -> None:
    """An IdP blip that publishes `{"keys": []}` is a failed fetch (the last good keys stay),
    not every key withdrawn: cached and new tokens of its keys keep working."""
    cached = s.token(sub="cached-user")
    assert (await s.post(cached))[0] == 200
    await s.idp.go_offline("no-keys")
    s.clock.advance(11)
    fetches = s.idp.jwks_requests
    unknown_kid = s.idp.mint({"aud": AUDIENCE, "team": "teama"}, kid="never-published")
    status, _ = await s.post(unknown_kid)  # starts the refetch, which finds no key
    assert status in (401, 503)
    assert s.idp.jwks_requests == fetches + 1
    for token in (cached, s.token(sub="new-user")):
        status, body = await s.post(token)
        assert status == 200, body
