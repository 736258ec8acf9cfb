"""A fault inside the gateway on the inference path: an OpenAI-shaped 500 (or 503 for a
database outage) with the request id, one access line, no trace to the caller."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.exc import OperationalError

from gateway.app import build_app
from gateway.services import build_services
from gateway.settings import Settings
from tests.support.gateway import serve_asgi

POLICY = """
providers:
  demo: {type: mock}
models:
  offline:
    deployments: [{provider: demo, model: mock-1}]
teams:
  demo: {models: ["*"]}
"""


class FailingVerifier:
    """An authenticator whose backing store breaks the way a bug or an outage does."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def verify(self, token: str, policy: object = None) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (RuntimeError("secret detail sk-abc"), 500, "internal_error"),
        (OperationalError("SELECT", {}, Exception("db gone")), 503, "database_unavailable"),
    ],
    ids=["bug", "database-outage"],
)
async def test_an_internal_fault_is_an_openai_error_with_its_request_id(
    tmp_path: Path, error: Exception, status: int, code: str
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "bundle.yaml").write_text(POLICY)
    access_log = tmp_path / "access.log"
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/gateway.db",
        policy_dir=policies,
        access_log=str(access_log),
    )
    async with build_services(settings) as services:
        broken = dataclasses.replace(services, verifier=FailingVerifier(error))
        async with serve_asgi(build_app(settings, broken)) as origin:
            async with aiohttp.ClientSession() as http:
                reply = await http.post(
                    f"{origin}/v1/chat/completions",
                    headers={"authorization": "Bearer x", "x-request-id": "req-fault-1"},
                    json={"model": "offline", "messages": [{"role": "user", "content": "hi"}]},
                )
                body = await reply.json()
        assert reply.status == status
        assert reply.headers["x-request-id"] == "req-fault-1"
        assert body["error"]["code"] == code and body["error"]["type"] == "api_error"
        assert "sk-abc" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    lines = [json.loads(line) for line in access_log.read_text().splitlines()]
    assert [(line["request_id"], line["status"], line["outcome"]) for line in lines] == [
        ("req-fault-1", status, "gateway_error")
    ]
