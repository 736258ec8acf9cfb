"""Refusals of the resource server's authentication, over HTTP: a forged token whose claims
would trip the gateway's own parsing, and a request that repeats its Authorization header."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2 as httpx
import pytest
from joserfc.jws import JWSRegistry

from tests.support.gateway import RunningGateway, running_gateway

POLICY = """\
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  demo: {models: ["*"]}
"""
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
PROTECTED = [
    ("GET", "/v1/models", None),
    ("GET", "/admin/policy", None),
    ("POST", "/v1/chat/completions", CHAT),
]


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, POLICY) as gateway:
        yield gateway


def b64(data: dict[str, object]) -> str:
    # json.dumps escapes non-ASCII (`\u00b2`): the token stays ASCII, as a header must.
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(claims: dict[str, object]) -> str:
    return f"{b64({'alg': 'none', 'typ': 'at+jwt'})}.{b64(claims)}."


async def send(
    gw: RunningGateway, method: str, path: str, body: object, headers: list[tuple[str, str]]
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.origin, timeout=10) as http:
        return await http.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(
    "issuer",
    [
        "http://localhost:\u00b2",  # superscript two: str.isdigit() says yes, int() says no
        "http://localhost:\u2460",  # circled one
        "http://localhost:\u0668\u0660",  # Arabic-Indic 80: int() reads it, still not ours
        "http://localhost:" + "9" * 5000,  # more digits than int() reads
    ],
    ids=["superscript", "circled", "arabic-indic", "5000-digits"],
)
@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[p for _, p, _ in PROTECTED])
async def test_a_forged_issuer_with_odd_port_digits_is_401_invalid_token(
    gw: RunningGateway, issuer: str, method: str, path: str, body: object
) -> None:
    """An unsigned token claiming `iss` http://localhost:² gets 401 invalid_token, not a 500."""
    token = unsigned({"iss": issuer, "aud": "llm-gateway", "team": "demo", "sub": "x"})
    reply = await send(gw, method, path, body, [("authorization", f"Bearer {token}")])
    assert reply.status_code == 401, reply.text
    assert 'error="invalid_token"' in reply.headers["www-authenticate"]
    assert reply.headers["www-authenticate"].startswith("Bearer ")
    assert reply.json()["error"]["type"] == "authentication_error"
    good = [("authorization", f"Bearer {await gw.token(scopes=('gateway:admin',))}")]
    assert (await send(gw, "GET", "/admin/policy", None, good)).status_code == 200


@pytest.mark.parametrize(
    "good_first", [True, False], ids=["good-then-garbage", "garbage-then-good"]
)
@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[p for _, p, _ in PROTECTED])
async def test_a_repeated_authorization_header_is_400_invalid_request(
    gw: RunningGateway, good_first: bool, method: str, path: str, body: object
) -> None:
    """Two Authorization headers, either order: 400 invalid_request with a Bearer challenge
    naming it (RFC 6750 §3.1), never the first one's answer; one header still works."""
    good = ("authorization", f"Bearer {await gw.token(scopes=('gateway:invoke', 'gateway:admin'))}")
    garbage = ("authorization", "Bearer garbage")
    headers = [good, garbage] if good_first else [garbage, good]
    reply = await send(gw, method, path, body, headers)
    assert reply.status_code == 400, reply.text
    assert (
        reply.headers["www-authenticate"] == 'Bearer realm="llm-gateway", error="invalid_request"'
    )
    error = reply.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_request")
    assert "Authorization header" in error["message"]
    assert reply.headers["x-request-id"]
    assert (await send(gw, method, path, body, [good])).status_code == 200


async def test_the_same_token_twice_is_still_a_repeated_header(gw: RunningGateway) -> None:
    """Even two identical headers are refused: the rule is one credential, whatever it holds."""
    good = ("authorization", f"Bearer {await gw.token()}")
    reply = await send(gw, "GET", "/v1/models", None, [good, good])
    assert reply.status_code == 400, reply.text


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"model": "m", "messages": []}', b'{"model": 5}', b""],
)
async def test_who_may_call_is_answered_before_what_was_sent(
    gw: RunningGateway, body: bytes
) -> None:
    """A token whose team the policy lacks is 401, and one without gateway:invoke 403,
    whatever the body: the body of a caller who may not call is never read or judged."""
    ghost = await gw.token("ghost")
    admin_only = await gw.token("demo", scopes=("gateway:admin",))
    async with httpx.AsyncClient(base_url=gw.origin, timeout=10) as http:
        for token, status, code in (
            (ghost, 401, "invalid_api_key"),
            (admin_only, 403, "insufficient_scope"),
        ):
            answer = await http.post(
                "/v1/chat/completions",
                content=body,
                headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
            )
            assert answer.status_code == status, answer.text
            assert answer.json()["error"]["code"] == code


async def signed_with_gateway_key(gw: RunningGateway, header: dict[str, object]) -> str:
    """A token of the gateway's own issuer, signed with its current key, with `header` as is."""
    key = await gw.services.keys.current()
    now = int(time.time())
    claims = {
        "iss": gw.services.verifier.builtin.issuer,
        "sub": "tester",
        "aud": "llm-gateway",
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": secrets.token_hex(8),
        "client_id": "tester",
        "scope": "gateway:invoke gateway:admin",
        "team": "demo",
    }
    signing_input = f"{b64({'alg': 'RS256', 'kid': key.kid, **header})}.{b64(claims)}"
    signature = JWSRegistry.algorithms["RS256"].sign(signing_input.encode(), key.private_key)
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


@pytest.mark.parametrize(
    "typ",
    [None, "JWT", "", "at+jwt ", "application/jwt"],
    ids=["absent", "JWT", "empty", "trailing-space", "plain-jwt-media-type"],
)
@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[p for _, p, _ in PROTECTED])
async def test_an_own_token_whose_typ_is_not_at_jwt_is_401_invalid_token(
    gw: RunningGateway, typ: str | None, method: str, path: str, body: object
) -> None:
    """RFC 9068 §4: a token signed with the gateway's own key whose `typ` is neither
    `at+jwt` nor `application/at+jwt` (absent included) gets 401 invalid_token; the same
    token with `at+jwt` is served."""
    header = {} if typ is None else {"typ": typ}
    token = await signed_with_gateway_key(gw, header)
    reply = await send(gw, method, path, body, [("authorization", f"Bearer {token}")])
    assert reply.status_code == 401, reply.text
    assert 'error="invalid_token"' in reply.headers["www-authenticate"]
    assert reply.json()["error"]["code"] == "invalid_api_key"
    good = await signed_with_gateway_key(gw, {"typ": "at+jwt"})
    reply = await send(gw, method, path, body, [("authorization", f"Bearer {good}")])
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("typ", ["application/at+jwt", "AT+JWT", "Application/At+Jwt"])
async def test_an_own_token_with_either_form_of_the_type_is_served(
    gw: RunningGateway, typ: str
) -> None:
    """RFC 9068 §4 accepts `at+jwt` and `application/at+jwt`; media types are compared
    case-insensitively (RFC 7515 §4.1.9)."""
    token = await signed_with_gateway_key(gw, {"typ": typ})
    reply = await send(gw, "GET", "/v1/models", None, [("authorization", f"Bearer {token}")])
    assert reply.status_code == 200, reply.text
