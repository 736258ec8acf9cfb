"""The built-in issuer as an admin and a team meet it: the real CLI, /oauth/token, the SDK.

The gateway runs in-process on 127.0.0.1; `gateway clients …` and `gateway keys …`
run as real subprocesses against the same SQLite file (GATEWAY_DATABASE_URL).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from joserfc import jws, jwt
from joserfc.jwk import KeySet

from gateway.audit import read_audit
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.processes import GATEWAY

TOKEN_TTL_S = 600
POLICY = """
providers:
  demo: {type: mock}
models:
  offline:
    deployments: [{provider: demo, model: mock-1}]
teams:
  search: {models: ["*"]}
"""


@dataclass
class Setup:
    gw: RunningGateway
    http: httpx.AsyncClient
    tmp_path: Path

    async def cli(self, *args: str) -> tuple[int, str, str]:
        """Run `gateway ARGS` against the gateway's database, without blocking its loop."""
        env = {
            **os.environ,
            "GATEWAY_DATABASE_URL": self.gw.settings.database_url,
            "GATEWAY_POLICY_DIR": str(self.gw.settings.policy_dir),
        }
        process = await asyncio.create_subprocess_exec(
            GATEWAY, *args, cwd=self.tmp_path, env=env, stdout=-1, stderr=-1
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def create_client(self, *args: str) -> dict[str, Any]:
        code, out, err = await self.cli("clients", "create", "--team", "search", *args)
        assert code == 0, err
        created: dict[str, Any] = json.loads(out)
        return created

    async def token_reply(
        self, data: dict[str, str], auth: tuple[str, str] | None = None
    ) -> httpx.Response:
        if auth is None:
            return await self.http.post("/oauth/token", data=data)
        return await self.http.post("/oauth/token", data=data, auth=auth)

    async def token(self, client: dict[str, Any], **form: str) -> str:
        reply = await self.token_reply(
            {"grant_type": "client_credentials", **form},
            auth=(client["client_id"], client["client_secret"]),
        )
        assert reply.status_code == 200, reply.text
        access_token: str = reply.json()["access_token"]
        return access_token

    async def admin_token(self, subject: str = "alice") -> str:
        return await self.gw.token(team="ops", scopes=("gateway:admin",), subject=subject)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with running_gateway(tmp_path, POLICY, token_ttl_s=TOKEN_TTL_S) as gw:
        async with httpx.AsyncClient(base_url=gw.origin) as http:
            yield Setup(gw, http, tmp_path)


class ClientCredentials:
    """What a team writes: fetch a token, reuse it until a minute before it expires."""

    def __init__(self, http: httpx.AsyncClient, client_id: str, secret: str) -> None:
        self.http, self.client_id, self.secret = http, client_id, secret
        self.token = ""
        self.expires_at = 0.0
        self.fetches = 0

    async def __call__(self) -> str:
        if time.time() > self.expires_at - 60:
            reply = await self.http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials", "scope": "gateway:invoke"},
                auth=(self.client_id, self.secret),
            )
            reply.raise_for_status()
            body = reply.json()
            self.token, self.expires_at = body["access_token"], time.time() + body["expires_in"]
            self.fetches += 1
        return self.token


def header_of(token: str) -> dict[str, Any]:
    return dict(jws.extract_compact(token.encode()).protected)


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(jws.extract_compact(token.encode()).payload)
    return claims


async def test_admin_creates_a_client_the_team_calls_with_the_sdk_and_revocation_stops_it(
    setup: Setup,
) -> None:
    """CLI create → token by Basic and by form → SDK with a refreshing api_key → CLI revoke → 401 within 2 s."""
    client = await setup.create_client("--name", "search-backend")
    assert client["client_id"].startswith("c-") and client["client_secret"]
    assert (client["team"], client["scopes"]) == ("search", ["gateway:invoke"])

    basic = await setup.token_reply(
        {"grant_type": "client_credentials"}, auth=(client["client_id"], client["client_secret"])
    )
    assert basic.status_code == 200, basic.text
    assert basic.headers["cache-control"] == "no-store"
    body = basic.json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == (
        "Bearer",
        TOKEN_TTL_S,
        "gateway:invoke",
    )
    assert "refresh_token" not in body
    form = await setup.token_reply(
        {
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        }
    )
    assert form.status_code == 200, form.text

    source = ClientCredentials(setup.http, client["client_id"], client["client_secret"])
    sdk = openai.AsyncOpenAI(base_url=setup.gw.base_url, api_key=source, max_retries=0)
    try:
        for _ in range(2):
            reply = await sdk.chat.completions.create(
                model="offline", messages=[{"role": "user", "content": "hello"}]
            )
            assert reply.choices[0].message.content == "This is the mock provider. You said: hello"
        assert source.fetches == 1  # the second call reused the token
        source.expires_at = 0  # as if it were about to expire: the SDK asks for a new one
        await sdk.models.list()
        assert source.fetches == 2

        code, _, err = await setup.cli("clients", "revoke", client["client_id"])
        assert code == 0, err
        revoked_at = time.monotonic()
        auth = {"authorization": f"Bearer {source.token}"}
        while (await setup.http.get("/v1/models", headers=auth)).status_code == 200:
            assert time.monotonic() - revoked_at < 2.0, "revocation took longer than 2 s"
            await asyncio.sleep(0.05)
        refused = await setup.http.get("/v1/models", headers=auth)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        assert refused.json()["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            await sdk.models.list()
    finally:
        await sdk.close()
    again = await setup.token_reply(
        {"grant_type": "client_credentials"}, auth=(client["client_id"], client["client_secret"])
    )
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"


async def test_tokens_follow_rfc_9068_and_verify_against_the_published_jwks(setup: Setup) -> None:
    """A token has typ at+jwt, our kid, every RFC 9068 claim, and verifies with the JWKS."""
    client = await setup.create_client("--scope", "gateway:invoke", "--scope", "gateway:finance")
    token = await setup.token(client, scope="gateway:finance")
    header = header_of(token)
    assert (header["typ"], header["alg"]) == ("at+jwt", "RS256")
    assert header["kid"] == (await setup.gw.services.keys.current()).kid

    meta = (await setup.http.get("/.well-known/oauth-authorization-server")).json()
    settings = setup.gw.settings
    assert meta["issuer"] == settings.issuer_url
    assert meta["token_endpoint"] == settings.issuer_url + "/oauth/token"
    assert meta["jwks_uri"] == settings.issuer_url + "/.well-known/jwks.json"
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }
    assert "gateway:invoke" in meta["scopes_supported"]
    assert meta["response_types_supported"] == ["token"]
    AuthorizationServerMetadata(meta).validate()  # a standard validator takes it as it is

    jwks = (await setup.http.get("/.well-known/jwks.json")).json()
    assert all("d" not in key and "p" not in key for key in jwks["keys"])  # public halves only
    claims = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256"]).claims
    assert claims["iss"] == settings.issuer_url and claims["aud"] == settings.audience
    assert claims["sub"] == claims["client_id"] == client["client_id"]
    assert (claims["team"], claims["scope"]) == ("search", "gateway:finance")
    assert claims["exp"] - claims["iat"] == TOKEN_TTL_S and claims["nbf"] == claims["iat"]
    assert claims["jti"]


async def test_bad_client_credentials_get_401_invalid_client(setup: Setup) -> None:
    """Wrong secret, unknown client or no credentials: 401 invalid_client, Basic challenge."""
    client = await setup.create_client()
    grant = {"grant_type": "client_credentials"}
    attempts = [
        await setup.token_reply(grant, auth=(client["client_id"], "wrong-secret")),
        await setup.token_reply(grant, auth=("c-unknown", client["client_secret"])),
        await setup.token_reply(
            {**grant, "client_id": client["client_id"], "client_secret": "wrong-secret"}
        ),
        await setup.token_reply({**grant, "client_id": "c-unknown", "client_secret": "x"}),
        await setup.token_reply(grant),
    ]
    for reply in attempts:
        assert reply.status_code == 401, reply.text
        assert reply.json()["error"] == "invalid_client"
        assert reply.headers["www-authenticate"].startswith("Basic")
        assert reply.headers["cache-control"] == "no-store"
        assert client["client_secret"] not in reply.text


async def test_grant_and_scope_errors(setup: Setup) -> None:
    """Unsupported grant → 400 unsupported_grant_type; a scope the client lacks → invalid_scope."""
    client = await setup.create_client()
    auth = (client["client_id"], client["client_secret"])
    password = await setup.token_reply({"grant_type": "password"}, auth=auth)
    assert (password.status_code, password.json()["error"]) == (400, "unsupported_grant_type")
    missing = await setup.token_reply({}, auth=auth)
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")
    for scope in ("gateway:admin", "gateway:invoke gateway:admin", 'no-such"scope'):
        reply = await setup.token_reply(
            {"grant_type": "client_credentials", "scope": scope}, auth=auth
        )
        assert (reply.status_code, reply.json()["error"]) == (400, "invalid_scope"), reply.text
        assert reply.json()["error_description"]


async def test_malformed_token_requests_are_refused_plainly(setup: Setup) -> None:
    """JSON instead of a form, a repeated parameter, GET: OAuth-shaped 400 / 405, never a 500."""
    client = await setup.create_client()
    as_json = await setup.http.post(
        "/oauth/token",
        json={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    repeated = await setup.http.post(
        "/oauth/token",
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert (repeated.status_code, repeated.json()["error"]) == (400, "invalid_request")
    garbage = await setup.http.post(
        "/oauth/token",
        content="grant_type=client_credentials",
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "authorization": "Basic //79/Q==",  # not UTF-8
        },
    )
    assert (garbage.status_code, garbage.json()["error"]) == (401, "invalid_client")
    assert (await setup.http.get("/oauth/token")).status_code == 405


async def test_a_form_client_id_naming_another_client_than_basic_is_refused(
    setup: Setup,
) -> None:
    """Basic for one client, form client_id for another: 400 invalid_request, no token; the
    same id in both is fine (RFC 6749 §3.2.1 lets a client repeat it)."""
    client, other = await setup.create_client(), await setup.create_client()
    auth = (client["client_id"], client["client_secret"])
    grant = {"grant_type": "client_credentials"}
    mismatched = await setup.token_reply({**grant, "client_id": other["client_id"]}, auth=auth)
    assert mismatched.status_code == 400, mismatched.text
    assert mismatched.json()["error"] == "invalid_request"
    assert "client_id" in mismatched.json()["error_description"]
    assert "access_token" not in mismatched.json()
    same = await setup.token_reply({**grant, "client_id": client["client_id"]}, auth=auth)
    assert same.status_code == 200, same.text
    assert claims_of(same.json()["access_token"])["client_id"] == client["client_id"]


@pytest.mark.parametrize("right_first", [True, False], ids=["right-then-wrong", "wrong-then-right"])
async def test_a_repeated_authorization_header_is_400_invalid_request(
    setup: Setup, right_first: bool
) -> None:
    """Two Authorization headers on /oauth/token, either order: 400 invalid_request, no token."""
    client = await setup.create_client()
    right = basic(client["client_id"], client["client_secret"])
    wrong = basic(client["client_id"], "wrong-secret")
    pair = [right, wrong] if right_first else [wrong, right]
    reply = await setup.http.post(
        "/oauth/token",
        content="grant_type=client_credentials",
        headers=[("content-type", "application/x-www-form-urlencoded")]
        + [("authorization", value) for value in pair],
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "invalid_request"
    assert "Authorization header" in reply.json()["error_description"]
    assert reply.headers["cache-control"] == "no-store"
    assert "access_token" not in reply.json()
    assert await setup.token(client)  # sent once, the same credentials work


async def test_key_rotation_new_tokens_carry_the_new_kid_and_old_tokens_still_work(
    setup: Setup,
) -> None:
    """`gateway keys rotate`: the next tokens use the new kid; earlier tokens keep working."""
    client = await setup.create_client()
    old_token = await setup.token(client)
    old_kid = header_of(old_token)["kid"]
    code, out, err = await setup.cli("keys", "rotate")
    assert code == 0, err
    new_kid = out.strip().splitlines()[-1]
    assert new_kid != old_kid

    deadline = time.monotonic() + 3
    while header_of(new_token := await setup.token(client))["kid"] != new_kid:
        assert time.monotonic() < deadline, "the running gateway kept signing with the old key"
        await asyncio.sleep(0.1)
    for token in (old_token, new_token):
        models = await setup.http.get("/v1/models", headers={"authorization": f"Bearer {token}"})
        assert models.status_code == 200, models.text
    kids = {key["kid"] for key in (await setup.http.get("/.well-known/jwks.json")).json()["keys"]}
    assert {old_kid, new_kid} <= kids

    code, out, err = await setup.cli("keys", "list", "--json")
    listed = {key["kid"]: key["status"] for key in json.loads(out)}
    assert (listed[new_kid], listed[old_kid]) == ("current", "retired")
    async with setup.gw.services.engine.connect() as conn:
        rotations = [e for e in await read_audit(conn) if e.action == "keys.rotate"]
    assert [e.target for e in rotations] == [new_kid]


async def test_admin_clients_api_needs_the_admin_scope(setup: Setup) -> None:
    """No token → 401; a gateway:invoke token → 403 insufficient_scope; OpenAI-shaped bodies."""
    invoke = await setup.gw.token(team="search", scopes=("gateway:invoke",))
    nobody = await setup.http.get("/admin/clients")
    assert nobody.status_code == 401 and nobody.json()["error"]["type"] == "authentication_error"
    for method, path in (("GET", "/admin/clients"), ("POST", "/admin/clients")):
        reply = await setup.http.request(
            method, path, headers={"authorization": f"Bearer {invoke}"}, json={"team": "search"}
        )
        assert reply.status_code == 403
        assert reply.json()["error"]["code"] == "insufficient_scope"
    revoke = await setup.http.delete(
        "/admin/clients/c-x", headers={"authorization": f"Bearer {invoke}"}
    )
    assert revoke.status_code == 403


async def test_admin_api_creates_lists_and_revokes_clients_with_an_audit_trail(
    setup: Setup,
) -> None:
    """POST shows the secret once and it works; GET lists; DELETE revokes; both are audited."""
    admin = {"authorization": f"Bearer {await setup.admin_token('alice')}"}
    created = await setup.http.post(
        "/admin/clients",
        headers=admin,
        json={"team": "search", "name": "batch", "scopes": ["gateway:invoke"]},
    )
    assert created.status_code == 201, created.text
    client = created.json()
    assert client["client_secret"] and client["revoked_at"] is None
    assert created.headers["cache-control"] == "no-store"
    await setup.token(client)

    listed = (await setup.http.get("/admin/clients", headers=admin)).json()
    assert listed["object"] == "list"
    shown = next(c for c in listed["data"] if c["client_id"] == client["client_id"])
    assert "client_secret" not in shown and shown["name"] == "batch"

    revoked = await setup.http.delete(f"/admin/clients/{client['client_id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    missing = await setup.http.delete("/admin/clients/c-nope", headers=admin)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")

    for body, param in (
        ({"name": "x"}, "team"),
        ({"team": "search", "scopes": "gateway:invoke"}, "scopes"),
        ({"team": "search", "scopes": ["gateway:root"]}, "scopes"),
    ):
        bad = await setup.http.post("/admin/clients", headers=admin, json=body)
        assert (bad.status_code, bad.json()["error"]["param"]) == (400, param), bad.text

    async with setup.gw.services.engine.connect() as conn:
        entries = await read_audit(conn)
    mine = [e for e in entries if e.target == client["client_id"]]
    assert [(e.action, e.actor) for e in mine] == [
        ("client.revoke", "alice"),
        ("client.create", "alice"),
    ]
    assert mine[0].before["revoked_at"] is None and mine[0].after["revoked_at"]
    assert client["client_secret"] not in json.dumps([e.as_json() for e in entries])


async def test_cli_changes_are_audited_without_the_secret(setup: Setup) -> None:
    """`clients create` and `clients revoke` from the CLI leave audit entries naming the user."""
    client = await setup.create_client()
    code, _, err = await setup.cli("clients", "revoke", client["client_id"])
    assert code == 0, err
    code, out, _ = await setup.cli("clients", "list", "--json")
    assert any(c["client_id"] == client["client_id"] and c["revoked_at"] for c in json.loads(out))
    async with setup.gw.services.engine.connect() as conn:
        entries = [e for e in await read_audit(conn) if e.target == client["client_id"]]
    assert [e.action for e in entries] == ["client.revoke", "client.create"]
    # The CLI's one actor form, user@host, as `policy apply` names it (was `cli:user`).
    assert all("@" in e.actor and e.via is None for e in entries), entries
    assert client["client_secret"] not in json.dumps([e.as_json() for e in entries])


async def test_a_form_declared_larger_than_the_limit_is_refused_without_waiting(
    setup: Setup,
) -> None:
    """A Content-Length over the form's limit is refused at once (413 invalid_request),
    not after waiting for bytes the client may never send (an unauthenticated caller
    would hold a connection until the client timeout)."""
    host, port = setup.gw.origin.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /oauth/token HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 99999999\r\n\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 413 "), head


async def test_a_form_sent_larger_than_the_limit_is_413(setup: Setup) -> None:
    """A form whose bytes (no Content-Length: chunked) pass the limit: 413 in OAuth's
    shape, as the API's body limit is 413."""

    async def chunks():
        yield b"grant_type=client_credentials&pad="
        for _ in range(80):
            yield b"x" * 1024

    reply = await setup.http.post(
        f"{setup.gw.origin}/oauth/token",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert reply.status_code == 413
    assert reply.json() == {
        "error": "invalid_request",
        "error_description": "The request body is too large.",
    }
