"""Every way of previewing or changing the policy warns as `gateway policy check` does:
the CLI (`diff`, `apply`, `rollback`) on stderr, the admin API (PUT /admin/policy,
PATCH /admin/teams/{team}, POST /admin/policy/rollback) in its answer's `warnings`."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.support.admin import ADMIN_POLICY, Admin
from tests.support.gateway import running_gateway
from tests.support.processes import run_gateway

# A USD budget over a model with no known price (the mock deployment has none).
UNPRICED = (
    "providers: {demo: {type: mock}}\n"
    "models: {small: {deployments: [{provider: demo, model: m}]}}\n"
    "teams: {a: {models: [small], budgets: [{period: month, usd: 10}]}}\n"
)
PRICED = UNPRICED.replace(
    "model: m}]}", "model: m}], price: {input_per_mtok: 1, output_per_mtok: 2}}"
)
WARNED = "warning: team 'a' has a USD budget, but model 'small'"


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: ")]


def _folder(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).mkdir()
    (tmp_path / name / "p.yaml").write_text(text)
    return tmp_path / name


def test_cli_diff_apply_and_rollback_warn_as_check_does(tmp_path: Path) -> None:
    """`diff`, `apply` and a `rollback` to that version print check's warning lines on
    stderr; a priced bundle gets none."""
    env = {"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.db"}
    unpriced = _folder(tmp_path, "unpriced", UNPRICED)
    priced = _folder(tmp_path, "priced", PRICED)
    assert run_gateway("migrate", cwd=tmp_path, env=env).returncode == 0
    checked = run_gateway("policy", "check", str(unpriced), cwd=tmp_path, env=env)
    expected = _warnings(checked.stderr)
    assert len(expected) == 1 and expected[0].startswith(WARNED), checked.stderr

    for args in (("diff",), ("apply", "--reason", "v1")):
        done = run_gateway("policy", *args, str(unpriced), cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        assert _warnings(done.stderr) == expected, (args, done.stderr)

    for args in (("diff",), ("apply",)):
        done = run_gateway("policy", *args, str(priced), cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        assert _warnings(done.stderr) == [], (args, done.stderr)

    done = run_gateway("policy", "rollback", "1", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert _warnings(done.stderr) == expected, done.stderr


async def test_admin_api_changes_answer_with_checks_warnings(tmp_path: Path) -> None:
    """PUT, PATCH and rollback answer 200 with `warnings`: check's warning for a USD
    budget over an unpriced model, `[]` when there is nothing to warn of."""
    async with running_gateway(tmp_path, ADMIN_POLICY) as gw, aiohttp.ClientSession() as http:
        admin = Admin(gw.origin, http, await gw.token(scopes=["gateway:admin"]))
        status, running = await admin.call("GET", "/admin/policy")
        assert status == 200, running
        bundle = running["bundle"]

        status, same = await admin.call(
            "PUT", "/admin/policy", {"bundle": bundle, "base_version": 1}
        )
        assert (status, same["changed"], same["warnings"]) == (200, False, []), same

        status, patched = await admin.call(
            "PATCH",
            "/admin/teams/search",
            {"changes": {"budgets": [{"period": "month", "usd": 5}]}, "base_version": 1},
        )
        assert status == 200 and patched["changed"], patched
        assert [w.split(" (deployment")[0] for w in patched["warnings"]] == [
            "team 'search' has a USD budget, but model 'small'",
            "team 'search' has a USD budget, but model 'large'",
        ], patched

        priced = {
            **patched["bundle"],
            "models": {
                name: {**model, "price": {"input_per_mtok": 1, "output_per_mtok": 1}}
                for name, model in patched["bundle"]["models"].items()
            },
        }
        status, put = await admin.call(
            "PUT", "/admin/policy", {"bundle": priced, "base_version": patched["version"]}
        )
        assert (status, put["changed"], put["warnings"]) == (200, True, []), put

        status, back = await admin.call(
            "POST", "/admin/policy/rollback", {"version": patched["version"]}
        )
        assert status == 200 and back["changed"], back
        assert back["warnings"] == patched["warnings"], back
