"""The built-in issuer's URL: the CLI mints what the server checks; 401s name the bad claim."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
from pathlib import Path

import aiohttp
import httpx2 as httpx
import orjson
import pytest

from tests.support.gateway import running_gateway
from tests.support.processes import run_gateway as run
from tests.support.serving import serve_process

POLICY = """\
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  demo: {models: ["*"]}
"""
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
SETTINGS = ("GATEWAY_ISSUER_URL", "GATEWAY_PORT", "GATEWAY_HOST", "GATEWAY_AUDIENCE")


def bare_env(**extra: str) -> dict[str, str]:
    """This process's environment without any issuer or listener setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    return {**env, **extra}


def call(origin: str, token: str) -> httpx.Response:
    return httpx.post(
        f"{origin}/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    )


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_cli_token_works_against_a_server_on_another_port(tmp_path: Path) -> None:
    """`serve --port P` with no GATEWAY_ISSUER_URL; `gateway token` from a shell that knows
    nothing of P mints a token the server takes, and discovery advertises port P."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bundle.yaml").write_text(POLICY)
    with serve_process(tmp_path, base_env=bare_env(), port_as_flag=True) as server:
        port, origin = server.port, server.origin
        meta = httpx.get(f"{origin}/.well-known/oauth-authorization-server", timeout=5).json()
        assert meta["issuer"] == f"http://localhost:{port}"
        assert meta["token_endpoint"] == f"http://localhost:{port}/oauth/token"
        token = last_line(run("token", "--team", "demo", cwd=tmp_path, env=bare_env()))
        answer = call(origin, token)
        assert answer.status_code == 200, answer.text
        # An operator who sets another issuer explicitly is warned, and the 401 says why.
        elsewhere = run(
            "token",
            "--team",
            "demo",
            cwd=tmp_path,
            env=bare_env(GATEWAY_ISSUER_URL="https://gw.example.com"),
        )
        assert "it will refuse this token (iss claim)" in elsewhere.stderr
        refused = call(origin, last_line(elsewhere))
        assert refused.status_code == 401
        assert "issuer (iss claim)" in refused.json()["error"]["message"]
        assert f"localhost:{port}" not in refused.text  # never the issuer we expect
    assert "Traceback" not in server.stderr()


def test_cli_token_before_any_serve_uses_its_own_settings(tmp_path: Path) -> None:
    """No server has recorded an issuer yet: the CLI's own (derived) issuer is used."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bundle.yaml").write_text(POLICY)
    result = run("token", "--team", "demo", cwd=tmp_path, env=bare_env(GATEWAY_PORT="9123"))
    payload = last_line(result).split(".")[1]
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["iss"] == "http://localhost:9123"


def test_a_token_minted_before_the_first_serve_works_on_any_port(tmp_path: Path) -> None:
    """`gateway token` first (nothing recorded: it mints for localhost:8080), then
    `serve --port P`: the server signed it with its own key, so it is accepted; with an
    explicit GATEWAY_ISSUER_URL on the server, only that issuer is."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bundle.yaml").write_text(POLICY)
    early = last_line(run("token", "--team", "demo", cwd=tmp_path, env=bare_env()))
    for explicit, expected in ((None, 200), ("https://gw.example.com", 401)):
        env = bare_env() if explicit is None else bare_env(GATEWAY_ISSUER_URL=explicit)
        with serve_process(tmp_path, base_env=env, port_as_flag=True) as server:
            answer = call(server.origin, early)
            assert answer.status_code == expected, answer.text


async def test_a_wrong_audience_is_401_saying_the_audience_was_wrong(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with running_gateway(tmp_path, POLICY) as gw:
        token = await gw.token(audience="another-tenants-gateway")
        async with http.post(
            f"{gw.base_url}/chat/completions",
            json=CHAT,
            headers={"authorization": f"Bearer {token}"},
        ) as response:
            body = await response.json()
            assert response.status == 401
            assert response.headers["www-authenticate"] == (
                'Bearer realm="llm-gateway", error="invalid_token"'
            )
        error = body["error"]
        assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
        assert error["message"] == "The access token's audience (aud claim) is not this gateway."
        assert gw.settings.audience not in error["message"]


@pytest.mark.parametrize(("leeway_s", "expected"), [(0, 401), (30, 200)])
async def test_token_leeway_is_the_setting(
    tmp_path: Path, http: aiohttp.ClientSession, leeway_s: int, expected: int
) -> None:
    """GATEWAY_TOKEN_LEEWAY_S: a token expired 10 s ago passes with 30 s, not with 0."""
    async with running_gateway(tmp_path, POLICY, token_leeway_s=leeway_s) as gw:
        token = await gw.token(ttl_s=60, issued_at=time.time() - 70)
        async with http.post(
            f"{gw.base_url}/chat/completions",
            json=CHAT,
            headers={"authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == expected
            if expected == 401:
                assert (await response.json())["error"]["message"] == (
                    "The access token has expired."
                )


def test_serve_warns_when_the_database_was_served_under_another_issuer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Replicas on one database under different issuers: the operator is told to set one
    GATEWAY_ISSUER_URL (while both are derived, their own tokens still verify on both)."""
    from gateway.commands.auth import record_issuer
    from gateway.db import migrate
    from gateway.settings import load_settings

    env = {"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/gateway.db"}
    asyncio.run(migrate(env["GATEWAY_DATABASE_URL"]))
    record_issuer(load_settings({**env, "GATEWAY_PORT": "9001"}))
    record_issuer(load_settings({**env, "GATEWAY_PORT": "9001"}))
    assert "warning" not in capsys.readouterr().err
    record_issuer(load_settings({**env, "GATEWAY_PORT": "9002"}))
    err = capsys.readouterr().err
    assert "last served with issuer http://localhost:9001, now http://localhost:9002" in err
    assert "GATEWAY_ISSUER_URL" in err
