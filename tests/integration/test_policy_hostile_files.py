"""A policy folder holding what no policy should: an error named, nothing stored or echoed.

`gateway policy check` and `serve`'s folder watcher see the same problems: a
number JSON cannot hold (`.inf`, `.nan`), a boolean for a number, a link to a
file outside the folder (never read, so its lines never reach a log).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.admin import Admin
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.processes import run_gateway as run

POLICY = """\
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-1}]}
teams:
  demo: {models: ["*"]}
  search: {models: [m]}
"""
SECRET_LINE = "root:$6$saltsalt$hashhashhashhash:19000:0:99999:7:::"


def folder_with(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    (folder / "bundle.yaml").write_text(text)
    return folder


def test_policy_check_refuses_an_infinite_price_without_a_traceback(tmp_path: Path) -> None:
    """`price: {input_per_mtok: .inf}` used to crash `policy check` with an OverflowError."""
    price = "price: {input_per_mtok: .inf, output_per_mtok: 1}"
    folder_with(tmp_path, POLICY.replace("model: mock-1}", f"model: mock-1, {price}}}"))
    result = run("policy", "check", "policies", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "policies/bundle.yaml:4: models.m.deployments[0].price.input_per_mtok: " in result.stderr
    assert "finite" in result.stderr


def test_policy_check_refuses_yaml_booleans_as_limits(tmp_path: Path) -> None:
    folder_with(
        tmp_path,
        POLICY.replace("search: {models: [m]}", "search: {limits: {rpm: yes, concurrency: on}}"),
    )
    result = run("policy", "check", "policies", cwd=tmp_path)
    assert result.returncode == 1
    assert "policies/bundle.yaml:7: teams.search.limits.rpm: " in result.stderr
    assert "policies/bundle.yaml:7: teams.search.limits.concurrency: " in result.stderr


def test_policy_check_names_a_link_outside_the_folder_and_prints_none_of_it(
    tmp_path: Path,
) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text(f"{SECRET_LINE}\ndaemon: {SECRET_LINE}\n")
    folder = folder_with(tmp_path, POLICY)
    (folder / "zz.yaml").symlink_to(shadow)
    result = run("policy", "check", "policies", cwd=tmp_path)
    assert result.returncode == 1
    assert "policies/zz.yaml: is a symbolic link to outside the policy folder" in result.stderr
    assert "saltsalt" not in result.stderr + result.stdout


async def folder_problem(admin: Admin) -> dict[str, Any]:
    """The watcher's report on the folder, once it has one."""
    for _ in range(50):
        _, running = await admin.call("GET", "/admin/policy")
        if "folder" in running and "invalid" in running["folder"]["problem"]:
            return dict(running)
        await asyncio.sleep(0.1)
    raise AssertionError("the watcher never reported the folder invalid")


async def test_the_watcher_stores_no_version_with_an_infinite_budget(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """v1 keeps running and stays newest; team changes through the API still work."""
    async with running_gateway(tmp_path, POLICY) as gw:
        admin = await admin_of(gw, http)
        (tmp_path / "policies" / "bundle.yaml").write_text(
            POLICY.replace(
                "search: {models: [m]}", "search: {budgets: [{period: month, usd: .inf}]}"
            )
        )
        running = await folder_problem(admin)
        assert running["version"] == 1
        assert "teams.search.budgets[0].usd" in running["folder"]["problem"]
        status, patched = await admin.call(
            "PATCH", "/admin/teams/demo", {"changes": {"limits": {"rpm": 5}}, "base_version": 1}
        )
        assert (status, patched["version"]) == (200, 2), patched


async def test_the_watcher_does_not_read_a_link_outside_the_folder(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text(f"{SECRET_LINE}\ndaemon: {SECRET_LINE}\n")
    async with running_gateway(tmp_path, POLICY) as gw:
        admin = await admin_of(gw, http)
        (tmp_path / "policies" / "zz.yaml").symlink_to(shadow)
        running = await folder_problem(admin)
        assert "zz.yaml: is a symbolic link to outside the policy folder" in str(running)
        assert "saltsalt" not in str(running)
        assert running["version"] == 1


async def admin_of(gw: RunningGateway, http: aiohttp.ClientSession) -> Admin:
    return Admin(gw.origin, http, await gw.token(scopes=["gateway:admin"]))
