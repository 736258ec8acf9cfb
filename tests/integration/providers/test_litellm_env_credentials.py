"""A translated provider's credentials come from its own policy fields only, never from
the gateway's environment: litellm's fallbacks (ANTHROPIC_API_KEY, GEMINI_API_KEY,
GOOGLE_API_KEY, AWS_*) reach no upstream a policy author chooses.

Each test runs a real gateway with such values in its environment, as a policy author
would find it, points providers at loopback mocks and reads what those received.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
import httpx
import pytest

from tests.integration.providers.litellm_upstreams import (
    LITELLM_WARNINGS,
    MockUpstream,
    Seen,
    run_upstream,
)
from tests.support.admin import Admin
from tests.support.gateway import RunningGateway, running_gateway

pytestmark = LITELLM_WARNINGS

# What the gateway's process holds for itself (an operator's own keys, an instance role's
# session): litellm reads each of these when a call leaves the matching parameter unset.
SERVER_ONLY = {
    "ANTHROPIC_API_KEY": "sk-ant-server-only-0001",
    "ANTHROPIC_AUTH_TOKEN": "server-only-anthropic-auth-token",
    "GEMINI_API_KEY": "server-only-gemini-key",
    "GOOGLE_API_KEY": "server-only-google-key",
    "AWS_ACCESS_KEY_ID": "AKIASERVERONLY000001",
    "AWS_SECRET_ACCESS_KEY": "server-only-aws-secret-access-key",
    "AWS_SESSION_TOKEN": "server-only-aws-session-token",
    "AWS_BEARER_TOKEN_BEDROCK": "server-only-bedrock-bearer",
}
# litellm's role settings: found in the environment, they switch a call to a role flow
# (an STS call, then the role's session sent along) even when the call has keys.
SERVER_ROLE = {
    "AWS_ROLE_NAME": "arn:aws:iam::123456789012:role/server-only-role",
    "AWS_SESSION_NAME": "server-only-session-name",
    "AWS_WEB_IDENTITY_TOKEN": "server-only-web-identity-token",
    "AWS_PROFILE_NAME": "server-only-profile",
    "AWS_EXTERNAL_ID": "server-only-external-id",
}
# The policy's own keys, referenced as ${POLICY_...}: the only names the gateway may expose.
POLICY_KEYS = {
    "POLICY_AWS_KEY_ID": "AKIAPOLICYOWNKEY0001",
    "POLICY_AWS_SECRET": "policy-own-aws-secret-access-key",
}
MOCK_ONLY = """\
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  demo: {models: ["*"]}
"""
BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
MESSAGES = [{"role": "user", "content": "hi"}]


def _server_environment(
    monkeypatch: pytest.MonkeyPatch, sts: str, held: tuple[str, ...] = ("bearer", "role")
) -> None:
    """The gateway's process as an attacker finds it; only POLICY_* may be referenced.
    `sts`: where a role flow would post (a mock, so no test reaches AWS); `held`: which of
    litellm's Bedrock alternatives it holds too (each would win over the plain keys)."""
    environment = {**SERVER_ONLY, **POLICY_KEYS}
    if "bearer" not in held:
        del environment["AWS_BEARER_TOKEN_BEDROCK"]
    if "role" in held:
        environment.update(SERVER_ROLE)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_STS_ENDPOINT", sts)
    monkeypatch.setenv("GATEWAY_SECRET_ENV_ALLOW", "POLICY_*")


def _leaks(seen: list[Seen]) -> list[str]:
    """The environment's values (or their names' secrets) anywhere in what an upstream got."""
    values = [*SERVER_ONLY.values(), *SERVER_ROLE.values()]
    found = []
    for request in seen:
        text = " ".join(
            [request.path, str(request.query), str(request.body), *request.headers.values()]
        )
        found += [value for value in values if value in text]
    return found


@asynccontextmanager
async def _mocks() -> AsyncIterator[dict[str, MockUpstream]]:
    async with AsyncExitStack() as stack:
        kinds = ("anthropic", "gemini", "bedrock")
        yield {kind: await stack.enter_async_context(run_upstream(kind)) for kind in kinds}


async def _post(gw: RunningGateway, path: str, body: dict[str, object]) -> httpx.Response:
    headers = {"authorization": f"Bearer {await gw.token()}"}
    async with httpx.AsyncClient(base_url=gw.origin, timeout=60) as client:
        return await client.post(path, json=body, headers=headers)


async def _put_policy(
    gw: RunningGateway, http: aiohttp.ClientSession, providers: dict[str, object]
) -> tuple[int, dict[str, object]]:
    admin = Admin(gw.origin, http, await gw.token(scopes=["gateway:admin"]))
    _, running = await admin.call("GET", "/admin/policy")
    bundle = running["bundle"]
    bundle["providers"].update(providers)
    for name, (provider, model) in {
        "a": ("evil-anthropic", "claude-3-haiku-20240307"),
        "g": ("evil-gemini", "gemini-1.5-flash"),
        "b": ("evil-bedrock", BEDROCK_MODEL),
        "r": ("evil-region", BEDROCK_MODEL),
    }.items():
        if provider in providers:
            bundle["models"][name] = {
                "deployments": [{"provider": provider, "model": model}],
                "routing": {"retries": 0},
            }
    return await admin.call(
        "PUT", "/admin/policy", {"bundle": bundle, "reason": "", "base_version": running["version"]}
    )


async def test_a_keyless_provider_sends_none_of_the_gateways_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http: aiohttp.ClientSession
) -> None:
    """Keyless anthropic, gemini and bedrock providers aimed at a policy author's host: the
    policy is refused (400, each naming its field) and that host receives no key of the
    gateway's; nothing the gateway holds is sent."""
    async with _mocks() as mocks:
        _server_environment(monkeypatch, mocks["bedrock"].base_url)
        async with running_gateway(tmp_path, MOCK_ONLY) as gw:
            status, answer = await _put_policy(
                gw,
                http,
                {
                    "evil-anthropic": {
                        "type": "anthropic",
                        "api_base": mocks["anthropic"].base_url,
                    },
                    "evil-gemini": {"type": "gemini", "api_base": mocks["gemini"].base_url},
                    "evil-bedrock": {
                        "type": "bedrock",
                        "api_base": mocks["bedrock"].base_url,
                        "region": "us-east-1",
                    },
                },
            )
            for model in ("a", "g", "b"):
                body = {"model": model, "messages": MESSAGES}
                await _post(gw, "/v1/chat/completions", body)
        seen = [request for mock in mocks.values() for request in mock.seen]
    assert _leaks(seen) == []
    assert status == 400, answer
    error = answer["error"]
    assert isinstance(error, dict)
    assert sorted(issue["field"] for issue in error["errors"]) == [
        "providers.evil-anthropic.api_key",
        "providers.evil-bedrock.api_base",
        "providers.evil-gemini.api_key",
    ]
    assert seen == []


async def test_a_region_cannot_name_another_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http: aiohttp.ClientSession
) -> None:
    """`region` is spliced into Bedrock's host name: one that is no AWS region name
    (`evil.com#`) is refused at its field, before any request."""
    async with _mocks() as mocks:
        _server_environment(monkeypatch, mocks["bedrock"].base_url)
        async with running_gateway(tmp_path, MOCK_ONLY) as gw:
            status, answer = await _put_policy(
                gw,
                http,
                {
                    "evil-region": {
                        "type": "bedrock",
                        "region": "evil.com#",
                        "aws_access_key_id": "${POLICY_AWS_KEY_ID}",
                        "aws_secret_access_key": "${POLICY_AWS_SECRET}",
                    }
                },
            )
    assert status == 400, answer
    error = answer["error"]
    assert isinstance(error, dict)
    assert [issue["field"] for issue in error["errors"]] == ["providers.evil-region.region"]


KEYED_BEDROCK = """\
providers:
  bed:
    type: bedrock
    api_base: "{bedrock}"
    region: us-east-1
    aws_access_key_id: "${{POLICY_AWS_KEY_ID}}"
    aws_secret_access_key: "${{POLICY_AWS_SECRET}}"
models:
  b: {{deployments: [{{provider: bed, model: "{model}"}}], routing: {{retries: 0}}}}
  e: {{deployments: [{{provider: bed, model: "{titan}"}}], routing: {{retries: 0}}}}
teams:
  demo: {{models: ["*"]}}
"""


@pytest.mark.parametrize(
    "held", [(), ("role",), ("bearer", "role")], ids=["keys", "role", "bearer"]
)
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "b", "messages": MESSAGES}),
        ("/v1/chat/completions", {"model": "b", "messages": MESSAGES, "stream": True}),
        ("/v1/completions", {"model": "b", "prompt": "hi"}),
        ("/v1/embeddings", {"model": "e", "input": ["one", "two"]}),
    ],
    ids=["chat", "chat-stream", "completions", "embeddings"],
)
async def test_a_keyed_bedrock_provider_signs_with_its_own_keys_only(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    body: dict[str, object],
    held: tuple[str, ...],
) -> None:
    """With its keys in the policy, Bedrock is signed with exactly those: no session token,
    bearer token or role of the gateway's environment is added or used instead."""
    async with run_upstream("bedrock") as bedrock:
        _server_environment(monkeypatch, bedrock.base_url, held)
        policy = KEYED_BEDROCK.format(bedrock=bedrock.base_url, model=BEDROCK_MODEL, titan=TITAN)
        async with running_gateway(tmp_path, policy) as gw:
            reply = await _post(gw, path, body)
    assert _leaks(bedrock.seen) == []
    assert reply.status_code == 200, reply.text
    assert bedrock.seen
    for request in bedrock.seen:
        assert request.path.startswith("/model/")  # no STS call: no role flow
        credential = f"AWS4-HMAC-SHA256 Credential={POLICY_KEYS['POLICY_AWS_KEY_ID']}/"
        assert request.headers["authorization"].startswith(credential)
        assert "x-amz-security-token" not in request.headers
