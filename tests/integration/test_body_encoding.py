"""A request body sent with a Content-Encoding (gzip, br, …): 415, not a JSON parse error.

The gateway does not decompress request bodies; a compressed one used to be answered
400 "We could not parse the JSON body", which sent the caller looking for a JSON
mistake. A real gateway on 127.0.0.1 in front of the mock upstream, raw HTTP as the client.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.gateway import RunningGateway, running_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  m:
    deployments: [{{provider: up, model: gpt-4o-mini}}]
  e:
    deployments: [{{provider: up, model: text-embedding-3-small}}]
teams:
  demo: {{models: [m, e]}}
"""
INFERENCE = {
    "/v1/chat/completions": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"model": "m", "prompt": "hi"},
    "/v1/embeddings": {"model": "e", "input": "hi"},
    "/v1/responses": {"model": "m", "input": "hi"},
}
ADMIN = {
    ("PATCH", "/admin/teams/demo"): {"changes": {"models": ["m"]}, "reason": "x"},
    ("PUT", "/admin/policy"): {"bundle": {}, "reason": "x"},
    ("POST", "/admin/clients"): {"team": "demo"},
}
ROUTES = [("POST", path, body) for path, body in INFERENCE.items()] + [
    (method, path, body) for (method, path), body in ADMIN.items()
]


@pytest.fixture
async def up() -> AsyncIterator[MockUpstream]:
    async with MockUpstream() as upstream:
        yield upstream


@pytest.fixture
async def gw(tmp_path: Path, up: MockUpstream) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gateway:
        yield gateway


async def send(
    gw: RunningGateway, method: str, path: str, data: bytes, encoding: str | None
) -> tuple[int, dict[str, str], Any]:
    token = await gw.token(scopes=("gateway:invoke", "gateway:admin"))
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    if encoding is not None:
        headers["content-encoding"] = encoding
    # auto_decompress/compress are about responses; aiohttp sends `data` as given.
    async with aiohttp.ClientSession() as http:
        async with http.request(method, gw.origin + path, data=data, headers=headers) as reply:
            lowered = {k.lower(): v for k, v in reply.headers.items()}
            return reply.status, lowered, await reply.json(content_type=None)


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[p for _, p, _ in ROUTES])
async def test_a_gzipped_body_is_415_naming_the_encoding(
    gw: RunningGateway, up: MockUpstream, method: str, path: str, body: Any
) -> None:
    """Inference and admin routes alike: 415 invalid_request_error naming gzip and asking
    for an uncompressed JSON body; nothing reaches the upstream."""
    data = gzip.compress(json.dumps(body).encode())
    status, headers, reply = await send(gw, method, path, data, "gzip")
    assert status == 415, reply
    error = reply["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "unsupported_encoding")
    assert "'gzip'" in error["message"] and "uncompressed JSON body" in error["message"]
    assert headers["accept-encoding"] == "identity"  # RFC 7694 §3
    assert up.requests == []


@pytest.mark.parametrize(
    ("encoding", "named"),
    [("br", "br"), ("DEFLATE", "deflate"), ("identity, gzip", "gzip"), ("x-custom", "x-custom")],
)
async def test_any_coding_but_identity_is_415(
    gw: RunningGateway, up: MockUpstream, encoding: str, named: str
) -> None:
    """Whatever the coding (a list included), the first one not `identity` is named; the
    body is not read for it (here plain JSON, which would otherwise be served)."""
    data = json.dumps(INFERENCE["/v1/chat/completions"]).encode()
    status, _, reply = await send(gw, "POST", "/v1/chat/completions", data, encoding)
    assert status == 415, reply
    assert f"'{named}'" in reply["error"]["message"]
    assert up.requests == []


@pytest.mark.parametrize("encoding", ["identity", "IDENTITY", " Identity ", ""])
async def test_identity_or_an_empty_encoding_is_served(
    gw: RunningGateway, up: MockUpstream, encoding: str
) -> None:
    """`identity` (any case) means no coding, as does an empty header: served as before."""
    data = json.dumps(INFERENCE["/v1/chat/completions"]).encode()
    status, _, reply = await send(gw, "POST", "/v1/chat/completions", data, encoding)
    assert status == 200, reply
    assert len(up.requests) == 1
