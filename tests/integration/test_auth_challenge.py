"""The 401 challenge when no Bearer token was sent, over HTTP (RFC 6750 §3.1, SPEC §2)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2 as httpx
import pytest

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
BARE = 'Bearer realm="llm-gateway"'
INVALID_TOKEN = 'Bearer realm="llm-gateway", error="invalid_token"'


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, POLICY) as gateway:
        yield gateway


async def chat(gw: RunningGateway, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.origin, timeout=10) as http:
        return await http.post("/v1/chat/completions", json=CHAT, headers=headers)


def assert_openai_401(reply: httpx.Response) -> None:
    assert reply.status_code == 401, reply.text
    error = reply.json()["error"]
    assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")


async def test_basic_credentials_get_a_challenge_without_an_error_code(
    gw: RunningGateway,
) -> None:
    """`curl -u a:b` (Basic, an unsupported method) gets 401 and `Bearer realm=...` only."""
    basic = "Basic " + base64.b64encode(b"a:b").decode()
    reply = await chat(gw, {"authorization": basic})
    assert_openai_401(reply)
    assert reply.headers["www-authenticate"] == BARE


async def raw_chat(gw: RunningGateway, authorization: bytes) -> tuple[int, dict[str, str]]:
    """Send the header byte for byte (httpx refuses a value ending in a space, curl does not)."""
    host, port = gw.origin.removeprefix("http://").split(":")
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n"
        b"content-type: application/json\r\nauthorization: " + authorization + b"\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), headers


@pytest.mark.parametrize("header", [b"Bearer ", b"Bearer", b"bearer   "])
async def test_an_empty_bearer_token_is_no_token(gw: RunningGateway, header: bytes) -> None:
    """`Authorization: Bearer ` with nothing after it is answered as no token: 401, no code."""
    status, headers = await raw_chat(gw, header)
    assert status == 401
    assert headers["www-authenticate"] == BARE.lower()


async def test_a_bad_bearer_token_still_says_invalid_token(gw: RunningGateway) -> None:
    """A token that was sent and refused keeps `error="invalid_token"`."""
    reply = await chat(gw, {"authorization": "Bearer not-a-token"})
    assert_openai_401(reply)
    assert reply.headers["www-authenticate"] == INVALID_TOKEN
