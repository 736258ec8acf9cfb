"""A policy with schema errors and unknown references lists all of them in one run, as
`terraform validate` does: `policy check`, `policy apply` and PUT /admin/policy (SPEC §1, §5)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.support.admin import ADMIN_POLICY, Admin
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.processes import run_gateway

# A team with a budget period and a limit of the wrong type, an unknown model and an
# unknown guardrail profile; a model whose deployment has a bad weight and an unknown
# provider.
BROKEN = """\
providers:
  demo: {type: mock}
models:
  small:
    deployments: [{provider: demo, model: m}]
  odd:
    deployments: [{provider: gone, model: m, weight: -1}]
teams:
  search:
    models: [small, ghost]
    budgets:
      - {period: fortnight, tokens: 100}
    limits: {rpm: "many"}
    guardrails: [nope]
"""

EXPECTED = [
    "a.yaml:7: models.odd.deployments[0].weight: Input should be greater than 0",
    "a.yaml:12: teams.search.budgets[0].period: Input should be 'day', 'week' or 'month'",
    "a.yaml:13: teams.search.limits.rpm: Input should be a valid integer",
    "a.yaml:7: models.odd.deployments[0].provider: unknown provider 'gone' (not in providers)",
    "a.yaml:10: teams.search.models[1]: unknown model 'ghost'",
    "a.yaml:14: teams.search.guardrails[0]: unknown guardrail profile 'nope' (not in guardrails)",
]


def broken_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "a.yaml").write_text(BROKEN)
    return folder


@pytest.mark.parametrize("command", ["check", "apply"])
def test_policy_check_and_apply_list_every_error_at_once_exit_1(
    tmp_path: Path, command: str
) -> None:
    """Each error on its own `error: file:line: field: message` line, and the count."""
    folder = broken_folder(tmp_path)
    if command == "apply":
        assert run_gateway("migrate", cwd=tmp_path).returncode == 0
    done = run_gateway("policy", command, str(folder), cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[:-1] == [f"error: {folder}/{line}" for line in EXPECTED], done.stderr
    assert lines[-1].endswith("is invalid (6 errors)")


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, ADMIN_POLICY) as gateway:
        yield gateway


async def test_put_policy_is_400_listing_every_error_at_once(
    gw: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """The same bundle as JSON: one 400 with all six errors; the running version stays."""
    admin = Admin(gw.origin, http, await gw.token(team="demo", scopes=["gateway:admin"]))
    body = {"bundle": yaml.safe_load(BROKEN), "reason": "", "base_version": 1}
    status, answer = await admin.call("PUT", "/admin/policy", body)
    assert status == 400
    error = answer["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_policy")
    assert [e["field"] for e in error["errors"]] == [line.split(": ")[1] for line in EXPECTED]
    assert all(e["location"] == "bundle" for e in error["errors"])
    assert "(6 errors)" in error["message"]
    assert "unknown model 'ghost'" in error["message"]
    _, running = await admin.call("GET", "/admin/policy")
    assert running["version"] == 1
