"""Tokens from external issuers (fake IdPs on loopback) through the real gateway."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from gateway.auth.jwks import JwksCache, KeySource, KeysUnavailable
from gateway.policy.store import load_policy_dir
from gateway.policy.upstreams import UpstreamRules, parse_upstream_allow
from tests.support.clock import ManualClock
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.idp import FakeIdP, b64url, json_segment

AUDIENCE = "llm-gateway"
POLICY = """
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  search: {models: [m], clients: [search-backend]}
  research: {models: [m]}
auth:
  issuers:
    - {issuer: "OKTA", audience: llm-gateway, team_claim: team}
    - issuer: "KEYCLOAK"
      audience: [account, llm-gateway]
      jwks_uri: "KEYCLOAK/jwks"
      algorithms: [RS256]
      team_claim: realm_access.roles
      team_map: {llm-research: research}
"""
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Setup:
    gw: RunningGateway
    okta: FakeIdP  # discovered through /.well-known/openid-configuration; `team` claim
    keycloak: FakeIdP  # jwks_uri configured; realm roles through team_map; RS256 only
    clock: ManualClock
    http: aiohttp.ClientSession

    async def post(self, token: str | None) -> tuple[int, dict[str, str], Any]:
        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        async with self.http.post(
            f"{self.gw.base_url}/chat/completions", json=CHAT, headers=headers
        ) as response:
            lowered = {k.lower(): v for k, v in response.headers.items()}
            return response.status, lowered, await response.json(content_type=None)

    def okta_token(self, **claims: Any) -> str:
        return self.okta.mint({"aud": AUDIENCE, "team": "search", **claims})


def policy_for(okta: FakeIdP, keycloak: FakeIdP) -> str:
    return POLICY.replace("KEYCLOAK", keycloak.issuer).replace("OKTA", okta.issuer)


@pytest.fixture
async def s(tmp_path: Path) -> AsyncIterator[Setup]:
    async with FakeIdP() as okta, FakeIdP() as keycloak:
        async with running_gateway(tmp_path, policy_for(okta, keycloak)) as gw:
            clock = ManualClock()
            gw.services.verifier.jwks.clock = clock
            async with aiohttp.ClientSession() as http:
                yield Setup(gw, okta, keycloak, clock, http)


def assert_invalid_token(status: int, headers: dict[str, str], body: Any) -> None:
    assert status == 401, body
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert (body["error"]["type"], body["error"]["code"]) == (
        "authentication_error",
        "invalid_api_key",
    )
    assert headers["www-authenticate"] == 'Bearer realm="llm-gateway", error="invalid_token"'


# --- good tokens --------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
async def test_a_good_token_works_with_the_openai_sdk(s: Setup, alg: str) -> None:
    """An IdP token (each algorithm) is a working api_key for the official SDK."""
    token = s.okta.mint({"aud": AUDIENCE, "team": "search"}, alg=alg)
    async with openai.AsyncOpenAI(base_url=s.gw.base_url, api_key=token, max_retries=0) as client:
        completion = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
        assert completion.choices[0].message.content
        assert [model.id for model in (await client.models.list()).data] == ["m"]
    assert s.okta.metadata_requests == 1 and s.okta.jwks_requests == 1


async def test_keycloak_style_token_maps_realm_roles_to_a_team(s: Setup) -> None:
    """typ JWT, aud list, team from realm_access.roles through team_map, client from azp."""
    token = s.keycloak.mint(
        {
            "aud": ["account", AUDIENCE],
            "azp": "research-cli",
            "realm_access": {"roles": ["offline_access", "llm-research"]},
            "scope": "profile gateway:invoke",
        },
        headers={"typ": "JWT"},
    )
    status, _, body = await s.post(token)
    assert status == 200, body
    principal = await s.gw.services.verifier.verify(token)
    assert (principal.team, principal.client_id, principal.subject) == (
        "research",
        "research-cli",
        "user-1",
    )
    assert s.keycloak.metadata_requests == 0  # jwks_uri configured: no discovery


async def test_okta_style_token_without_team_uses_the_policys_client(s: Setup) -> None:
    """No team claim, no typ, `cid` + `scp` list: the client's team from the policy, scp scopes."""
    token = s.okta.mint(
        {"aud": AUDIENCE, "cid": "search-backend", "scp": ["gateway:invoke"]},
        headers={"typ": None},
    )
    status, _, body = await s.post(token)
    assert status == 200, body
    assert (await s.gw.services.verifier.verify(token)).team == "search"


async def test_our_own_tokens_still_work(s: Setup) -> None:
    status, _, body = await s.post(await s.gw.token(team="search"))
    assert status == 200, body


# --- attacks --------------------------------------------------------------------------------


def _tampered(s: Setup) -> str:
    header, _, signature = s.okta_token(team="search").split(".")
    forged = base64.urlsafe_b64encode(
        orjson.dumps({**s.okta.claims(), "aud": AUDIENCE, "team": "research"})
    )
    return f"{header}.{forged.rstrip(b'=').decode()}.{signature}"


def _with_header(s: Setup, **header: object) -> str:
    """A token whose header carries odd values; its signature is junk (never checked)."""
    fields = {"typ": "at+jwt", "kid": s.okta.kid("RS256"), **header}
    body = {**s.okta.claims(), "aud": AUDIENCE, "team": "search"}
    return f"{json_segment(fields)}.{json_segment(body)}.{b64url(b'x' * 256)}"


ATTACKS: dict[str, Callable[[Setup], str]] = {
    "garbage": lambda s: "not-a-token",
    "three garbage segments": lambda s: "a.b.c",
    "alg none": lambda s: s.okta.forge_alg_none({"aud": AUDIENCE, "team": "search"}),
    "HS256 signed with the issuer's public key": lambda s: s.okta.forge_hs256_with_public_key(
        {"aud": AUDIENCE, "team": "search"}
    ),
    "expired": lambda s: s.okta.mint(
        {"aud": AUDIENCE, "team": "search"}, ttl_s=60, now=time.time() - 3600
    ),
    "nbf in the future": lambda s: s.okta_token(nbf=int(time.time()) + 3600),
    "wrong aud": lambda s: s.okta_token(aud="someone-else"),
    "wrong iss (unknown issuer)": lambda s: s.okta_token(iss="https://evil.example.com"),
    "wrong iss (another configured issuer)": lambda s: s.okta_token(iss=s.keycloak.issuer),
    "unknown kid": lambda s: s.okta.mint({"aud": AUDIENCE, "team": "search"}, kid="not-published"),
    "tampered payload": _tampered,
    "team not in the policy": lambda s: s.okta_token(team="ghosts"),
    "no team, unknown client": lambda s: s.okta_token(team=None, cid="stranger"),
    "typ of another kind of JWT": lambda s: s.okta.mint(
        {"aud": AUDIENCE, "team": "search"}, headers={"typ": "dpop+jwt"}
    ),
    "alg the issuer does not allow": lambda s: s.keycloak.mint(
        {"aud": AUDIENCE, "realm_access": {"roles": ["llm-research"]}}, alg="ES256"
    ),
    "alg as a JSON array": lambda s: _with_header(s, alg=["RS256"]),
    "alg as a JSON object": lambda s: _with_header(s, alg={"RS256": 1}),
    "unknown critical header": lambda s: s.okta.mint(
        {"aud": AUDIENCE, "team": "search"}, headers={"crit": ["exp-ext"], "exp-ext": 1}
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_attack_tokens_are_refused_with_401(s: Setup, attack: str) -> None:
    """Each bad token gets 401, OpenAI's error body and an invalid_token challenge."""
    assert_invalid_token(*await s.post(ATTACKS[attack](s)))
    status, _, body = await s.post(s.okta_token())  # and the gateway keeps serving
    assert status == 200, body


async def test_no_token_is_401_with_a_bare_challenge(s: Setup) -> None:
    status, headers, body = await s.post(None)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert headers["www-authenticate"] == 'Bearer realm="llm-gateway"'


async def test_a_token_without_gateway_invoke_is_403(s: Setup) -> None:
    """A valid token whose scopes lack gateway:invoke gets 403 insufficient_scope."""
    status, headers, body = await s.post(s.okta_token(scope="gateway:finance"))
    assert status == 403
    assert (body["error"]["type"], body["error"]["code"]) == (
        "permission_error",
        "insufficient_scope",
    )
    assert 'error="insufficient_scope"' in headers["www-authenticate"]


# --- keys: refetch, rotation, outage --------------------------------------------------------


async def test_unknown_kid_refetches_once_per_10_seconds(s: Setup) -> None:
    """An unknown kid costs one JWKS fetch; another unknown kid within 10 s costs none and
    is 401 too (the keys are as fresh as the refetch limit allows)."""
    assert (await s.post(s.okta_token()))[0] == 200
    s.clock.advance(11)
    before = s.okta.jwks_requests
    bad = s.okta.mint({"aud": AUDIENCE, "team": "search"}, kid="nope-1")
    assert_invalid_token(*await s.post(bad))
    assert s.okta.jwks_requests == before + 1
    s.clock.advance(9)
    worse = s.okta.mint({"aud": AUDIENCE, "team": "search"}, kid="nope-2")
    assert_invalid_token(*await s.post(worse))
    assert s.okta.jwks_requests == before + 1


async def test_key_rotation_is_picked_up_by_the_unknown_kid_refetch(s: Setup) -> None:
    """After the IdP rotates, its new kid triggers one refetch and the token works."""
    assert (await s.post(s.okta_token()))[0] == 200
    assert s.okta.jwks_requests == 1
    s.clock.advance(10)
    s.okta.rotate("RS256")
    status, _, body = await s.post(s.okta_token())
    assert status == 200, body
    assert s.okta.jwks_requests == 2

    s.clock.advance(5)  # a second rotation used at once, within 10 s: no fetch, 401
    s.okta.rotate("RS256")
    token = s.okta_token()
    assert_invalid_token(*await s.post(token))
    assert s.okta.jwks_requests == 2
    s.clock.advance(5)  # the next refetch picks it up
    assert (await s.post(token))[0] == 200
    assert s.okta.jwks_requests == 3


@pytest.mark.parametrize("mode", ["503", "refuse"])
async def test_an_offline_idp_leaves_the_last_good_keys_in_use(s: Setup, mode: str) -> None:
    """While the IdP is down, new tokens signed by known keys keep working; one with a kid
    the cache lacks cannot be checked (the IdP may have rotated): 503, not 401."""
    assert (await s.post(s.okta_token()))[0] == 200
    await s.okta.go_offline(mode)  # type: ignore[arg-type]  # parametrized literal
    s.clock.advance(2 * 3600)  # keys are old: a background refresh is tried and fails
    status, _, body = await s.post(s.okta_token(sub="user-2"))
    assert status == 200, body
    s.clock.advance(10)
    requests = s.okta.jwks_requests + s.okta.metadata_requests
    unknown = s.okta.mint({"aud": AUDIENCE, "team": "search"}, kid="not-published")
    status, headers, body = await s.post(unknown)  # its refetch is tried, and fails
    assert (status, body["error"]["code"]) == (503, "issuer_unavailable"), body
    assert "retry-after" in headers and "www-authenticate" not in headers
    if mode == "503":
        assert s.okta.jwks_requests + s.okta.metadata_requests > requests
    status, _, body = await s.post(s.okta_token(sub="user-3"))
    assert status == 200, body
    await s.okta.come_online()


async def test_a_repeated_token_is_not_verified_again(s: Setup) -> None:
    """The second and later uses of a token cost a cache lookup, even with the IdP gone."""
    token = s.okta_token()
    authenticator = s.gw.services.verifier
    before = authenticator.verifications
    assert (await s.post(token))[0] == 200
    await s.okta.go_offline("refuse")
    s.okta.rotate("RS256", keep_old=False)
    for _ in range(3):
        assert (await s.post(token))[0] == 200
    assert authenticator.verifications == before + 1
    await s.okta.come_online()


async def test_a_policy_change_adds_and_removes_issuers_without_restart(
    s: Setup, tmp_path: Path
) -> None:
    """Dropping an issuer from the policy refuses its tokens at once, cached ones included."""
    token = s.okta_token()
    assert (await s.post(token))[0] == 200
    without_okta = policy_for(s.okta, s.keycloak).replace(
        f'    - {{issuer: "{s.okta.issuer}", audience: llm-gateway, team_claim: team}}\n', ""
    )
    folder = tmp_path / "next"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(without_okta)
    store = s.gw.services.policy
    previous, version = store.current(), store.version
    store.swap(load_policy_dir(folder, os.environ), version)  # as that version: the poll keeps it
    assert_invalid_token(*await s.post(token))
    store.swap(previous, version)
    assert (await s.post(token))[0] == 200


# --- the JWKS cache against a live IdP ------------------------------------------------------


async def test_concurrent_unknown_kids_share_one_fetch() -> None:
    async with FakeIdP() as idp:
        clock = ManualClock()
        cache = JwksCache(clock=clock)
        source = KeySource(idp.issuer, idp.jwks_uri)
        await cache.keys(source)
        clock.advance(10)
        refetches = (cache.refetch_for_unknown_kid(source, "new") for _ in range(20))
        results = await asyncio.gather(*refetches)
        assert all(len(keys) == 4 for keys in results)
        assert idp.jwks_requests == 2
        await cache.close()


async def test_discovery_falls_back_to_rfc8414_metadata() -> None:
    async with FakeIdP(discovery="oauth") as idp:
        cache = JwksCache()
        assert len(await cache.keys(KeySource(idp.issuer))) == 4
        assert idp.metadata_requests == 2  # openid-configuration 404, then RFC 8414
        await cache.close()


async def test_discovery_refuses_metadata_naming_another_issuer() -> None:
    """A configured issuer that differs from the metadata's (here a trailing slash) gets no keys."""
    async with FakeIdP() as idp:
        cache = JwksCache()
        with pytest.raises(KeysUnavailable):
            await cache.keys(KeySource(idp.issuer + "/"))
        assert idp.jwks_requests == 0
        await cache.close()


async def test_an_oversized_jwks_is_refused_and_the_old_keys_stay() -> None:
    async with FakeIdP() as idp:
        clock = ManualClock()
        cache = JwksCache(clock=clock, max_document_bytes=8 * 1024)
        source = KeySource(idp.issuer, idp.jwks_uri)
        first = await cache.keys(source)
        for _ in range(20):
            idp.rotate("RS256")
        clock.advance(10)
        with pytest.raises(KeysUnavailable):  # the rotated kids cannot be known
            await cache.refetch_for_unknown_kid(source, idp.kid("RS256"))
        assert await cache.keys(source) == first
        await cache.close()


async def test_an_unreachable_issuer_without_keys_is_retried_after_the_interval() -> None:
    async with FakeIdP() as idp:
        clock = ManualClock()
        cache = JwksCache(clock=clock)
        source = KeySource(idp.issuer, idp.jwks_uri)
        await idp.go_offline("503")
        with pytest.raises(KeysUnavailable):
            await cache.keys(source)
        await idp.come_online()
        with pytest.raises(KeysUnavailable):  # within 10 s: no new attempt
            await cache.keys(source)
        assert idp.jwks_requests == 1
        clock.advance(10)
        assert len(await cache.keys(source)) == 4
        await cache.close()


async def test_jwks_redirects_are_followed_only_within_the_configured_origin() -> None:
    """Keys are trusted for the URL the policy names: a redirect to another host is refused."""
    async with FakeIdP() as idp, aiohttp.ClientSession() as http:
        async with http.get(idp.jwks_uri) as response:
            document = await response.read()

        async def serve(request: web.Request) -> web.StreamResponse:
            if request.path == "/keys":
                return web.Response(body=document, content_type="application/json")
            target = "/keys" if request.path == "/same-origin" else idp.jwks_uri
            raise web.HTTPFound(target)

        app = web.Application()
        app.router.add_get("/{name}", serve)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        origin = f"http://127.0.0.1:{runner.addresses[0][1]}"
        cache = JwksCache()
        try:
            keys = await cache.keys(KeySource(idp.issuer, f"{origin}/same-origin"))
            assert len(keys) == 4
            with pytest.raises(KeysUnavailable):
                await cache.keys(KeySource(idp.issuer + "/other", f"{origin}/elsewhere"))
            assert idp.jwks_requests == 1  # only the test's own read reached the IdP
        finally:
            await cache.close()
            await runner.cleanup()


# --- where keys may be fetched from (the upstream rules) ------------------------------------


async def test_a_jwks_uri_outside_the_allow_list_is_never_requested() -> None:
    """GATEWAY_UPSTREAM_ALLOW bounds key fetches as it bounds api_base: no request at all."""
    async with FakeIdP() as idp:
        rules = UpstreamRules(parse_upstream_allow("api.openai.com"), None)
        cache = JwksCache(upstreams=rules)
        with pytest.raises(KeysUnavailable):
            await cache.keys(KeySource(idp.issuer, idp.jwks_uri))
        with pytest.raises(KeysUnavailable):
            await cache.keys(KeySource(idp.issuer))  # discovery: the metadata is not fetched
        assert (idp.jwks_requests, idp.metadata_requests) == (0, 0)
        await cache.close()


async def test_a_discovered_jwks_uri_at_a_metadata_address_is_refused_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An issuer's metadata pointing at 169.254.169.254: no keys (401), one warning."""
    metadata_requests = 0

    async def serve(request: web.Request) -> web.StreamResponse:
        nonlocal metadata_requests
        metadata_requests += 1
        document = {"issuer": origin, "jwks_uri": "http://169.254.169.254/latest/meta-data/"}
        return web.json_response(document)

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    origin = f"http://127.0.0.1:{runner.addresses[0][1]}"
    clock = ManualClock()
    cache = JwksCache(clock=clock)
    caplog.set_level(logging.WARNING, logger="gateway.auth.jwks")
    try:
        for _ in range(2):
            with pytest.raises(KeysUnavailable):
                await cache.keys(KeySource(origin))
            clock.advance(10)
    finally:
        await cache.close()
        await runner.cleanup()
    assert metadata_requests == 2  # asked again after the interval; the keys URL never
    warnings = [r.getMessage() for r in caplog.records if r.name == "gateway.auth.jwks"]
    assert len(warnings) == 1, warnings
    assert "169.254.169.254" in warnings[0] and "metadata" in warnings[0]
