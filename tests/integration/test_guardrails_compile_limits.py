"""A keyword list RE2 cannot compile is a policy error, not a traceback or a 500.

`gateway policy check` (a real process) prints `file:line: field: message` and exits 1;
PUT /admin/policy (real HTTP, SQLite) answers 400 `invalid_policy` naming the field and
stores nothing.
"""

from __future__ import annotations

import random
import string
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.admin import ADMIN_POLICY, Admin, admin_client
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.processes import run_gateway


def words(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(string.ascii_lowercase, k=30)) for _ in range(count)]


def test_policy_check_locates_a_keyword_list_past_the_bound(tmp_path: Path) -> None:
    """3,000 keywords of 30 letters: one located line, exit 1, no traceback."""
    policies = tmp_path / "policies"
    policies.mkdir()
    listed = "\n".join(f"        - {word}" for word in words(3000, seed=1))
    (policies / "policy.yaml").write_text(
        ADMIN_POLICY.replace('demo: {models: ["*"]}', 'demo: {models: ["*"], guardrails: [big]}')
        + f"guardrails:\n  big:\n    input:\n      - name: words\n        action: block\n"
        f"        keywords:\n{listed}\n"
    )
    done = run_gateway("policy", "check", str(policies), cwd=tmp_path)
    assert done.returncode == 1, done
    lines = [line for line in done.stderr.splitlines() + done.stdout.splitlines() if line]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert all(line.startswith(("error: ", "policy bundle ")) for line in lines), lines
    assert (
        f"error: {policies / 'policy.yaml'}:14: guardrails.big.input[0].keywords: " in done.stderr
    )
    assert "keywords total 90,000 characters, more than the 64,000" in done.stderr


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    async with running_gateway(tmp_path, ADMIN_POLICY) as gateway:
        gw: RunningGateway = gateway
        token = await gw.token(scopes=["gateway:admin"], subject="alice@example.com")
        async with admin_client(gw.origin, token) as client:
            yield client


async def test_admin_put_of_rules_too_large_together_is_400(admin: Admin) -> None:
    """Two keyword rules, each under the bound, too large for one RE2 set: 400 at the larger."""
    rules: list[dict[str, Any]] = [
        {"name": "w0", "action": "block", "keywords": words(1500, seed=2)},
        {"name": "w1", "action": "block", "keywords": words(2000, seed=3)},
    ]
    bundle = {
        "providers": {"demo": {"type": "mock"}},
        "models": {"small": {"deployments": [{"provider": "demo", "model": "mock-small"}]}},
        "teams": {"demo": {"models": ["*"], "guardrails": ["big"]}},
        "guardrails": {"big": {"input": rules}},
    }
    status, answer = await admin.call("PUT", "/admin/policy", {"bundle": bundle, "base_version": 1})
    assert status == 400, answer
    error = answer["error"]
    assert error["code"] == "invalid_policy"
    assert [e["field"] for e in error["errors"]] == ["guardrails.big.input[1].keywords"]
    assert "8 MiB RE2 allows" in error["errors"][0]["message"]
    status, listed = await admin.call("GET", "/admin/policy/versions?limit=1")
    assert status == 200 and listed["data"][0]["version"] == 1, listed  # nothing stored
