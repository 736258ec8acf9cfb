"""litellm (seconds to import) is loaded before a policy naming a translated provider is
in force, never inside the first request to it (probe p24: that request stalled the whole
process and, under a short attempt_timeout_s, a healthy upstream was booked as a 504).
Real `gateway serve` processes: a test process has litellm imported already."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.integration.providers.litellm_upstreams import API_KEY, LITELLM_WARNINGS, run_upstream
from tests.support.processes import run_gateway
from tests.support.serving import serve_process

pytestmark = LITELLM_WARNINGS

MOCK_ONLY = """
providers:
  demo: {type: mock}
models:
  small: {deployments: [{provider: demo, model: mock-small}]}
teams:
  demo: {models: ["*"]}
"""
WITH_CLAUDE = """
providers:
  demo: {{type: mock}}
  claude: {{type: anthropic, api_base: "{base}", api_key: "${{ANTHROPIC_TEST_KEY}}"}}
models:
  small: {{deployments: [{{provider: demo, model: mock-small}}]}}
  claude-haiku:
    deployments: [{{provider: claude, model: claude-3-5-haiku-20241022}}]
    routing: {{attempt_timeout_s: 1, timeout_s: 5, retries: 0}}
teams:
  demo: {{models: ["*"]}}
"""
ENV = {"ANTHROPIC_TEST_KEY": API_KEY, "GATEWAY_UPSTREAM_ALLOW": "127.0.0.1"}


async def first_chat(origin: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            f"{origin}/v1/chat/completions",
            headers={"authorization": f"Bearer {token}"},
            json={
                "model": "claude-haiku",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 20,
            },
        )


def token(tmp_path: Path) -> str:
    minted = run_gateway("token", "--team", "demo", cwd=tmp_path)
    assert minted.returncode == 0, minted.stderr
    return minted.stdout.strip().splitlines()[-1]


async def test_the_first_request_at_start_is_answered_within_its_attempt_timeout(
    tmp_path: Path,
) -> None:
    async with run_upstream("anthropic") as upstream:
        (tmp_path / "policies").mkdir()
        (tmp_path / "policies" / "policy.yaml").write_text(
            WITH_CLAUDE.format(base=upstream.base_url)
        )
        with serve_process(tmp_path, ENV) as server:
            answer = await first_chat(server.origin, token(tmp_path))
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-gateway-deployment"] == "claude/claude-3-5-haiku-20241022"


async def test_the_first_request_after_a_policy_adds_one_is_too(tmp_path: Path) -> None:
    """Served with no translated provider, then a version naming one arrives (the
    watched folder): once the model is listed, its first request is answered in time."""
    async with run_upstream("anthropic") as upstream:
        folder = tmp_path / "policies"
        folder.mkdir()
        (folder / "policy.yaml").write_text(MOCK_ONLY)
        with serve_process(tmp_path, ENV, ("--policies", str(folder))) as server:
            bearer = token(tmp_path)
            (folder / "policy.yaml").write_text(WITH_CLAUDE.format(base=upstream.base_url))
            deadline = time.monotonic() + 30
            async with httpx.AsyncClient(timeout=10) as http:
                while True:
                    listed = await http.get(
                        f"{server.origin}/v1/models", headers={"authorization": f"Bearer {bearer}"}
                    )
                    if "claude-haiku" in {m["id"] for m in listed.json()["data"]}:
                        break
                    assert time.monotonic() < deadline, server.stderr()
                    await asyncio.sleep(0.2)
            answer = await first_chat(server.origin, bearer)
            assert answer.status_code == 200, answer.text
