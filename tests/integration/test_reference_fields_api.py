"""A `${VAR}` outside a secret field (azure `api_version`, bedrock `region`) is refused by
`gateway policy check` at its file, line and field, and by the admin API with a 400; the
key it names never reaches an upstream URL, the output or the stored policy."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.support.admin import Admin
from tests.support.gateway import running_gateway
from tests.support.processes import run_gateway as run

KEY = "sk-fake-key-0123456789abcdef"
AZURE_VERSION_FROM_ENV = """\
providers:
  demo: {type: mock}
  az:
    type: azure
    api_base: "https://example.openai.azure.com"
    api_key: "${FAKE_API_KEY}"
    api_version: "${FAKE_API_KEY}"
models:
  m: {deployments: [{provider: az, model: gpt-4o}]}
teams:
  demo: {models: ["*"]}
"""
MOCK_ONLY = """\
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  demo: {models: ["*"]}
"""


def test_policy_check_refuses_a_reference_in_api_version(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(AZURE_VERSION_FROM_ENV)
    result = run("policy", "check", "policies", cwd=tmp_path, env={"FAKE_API_KEY": KEY})
    assert result.returncode == 1
    assert (
        "policies/bundle.yaml:7: providers.az.api_version: ${FAKE_API_KEY} is refused here: "
        "a reference stands only in a secret field"
    ) in result.stderr
    assert "providers.az.api_key" not in result.stderr  # the key's own field may hold it
    assert KEY not in result.stderr + result.stdout


async def test_admin_put_with_a_reference_in_api_version_or_region_is_400(
    tmp_path: Path, http: aiohttp.ClientSession, monkeypatch
) -> None:
    monkeypatch.setenv("FAKE_API_KEY", KEY)
    async with running_gateway(tmp_path, MOCK_ONLY) as gw:
        admin = Admin(gw.origin, http, await gw.token(scopes=["gateway:admin"]))
        _, running = await admin.call("GET", "/admin/policy")
        bundle = running["bundle"]
        bundle["providers"]["az"] = {
            "type": "azure",
            "api_base": "https://example.openai.azure.com",
            "api_key": "${FAKE_API_KEY}",
            "api_version": "${FAKE_API_KEY}",
        }
        bundle["providers"]["bed"] = {"type": "bedrock", "region": "${FAKE_API_KEY}"}
        status, answer = await admin.call(
            "PUT", "/admin/policy", {"bundle": bundle, "reason": "", "base_version": 1}
        )
        assert status == 400, answer
        fields = sorted(error["field"] for error in answer["error"]["errors"])
        assert fields == ["providers.az.api_version", "providers.bed.region"]
        assert KEY not in str(answer)
        _, running = await admin.call("GET", "/admin/policy")
        assert running["version"] == 1
