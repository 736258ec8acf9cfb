"""An empty bundle is a version like any other: it exports, checks and applies back, and
the watched folder that holds it stays valid, so a later rollback rewrites it (SPEC §4)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.admin import ADMIN_POLICY, Admin
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.processes import run_gateway


async def until(condition: Callable[[], bool], within_s: float = 8.0) -> None:
    for _ in range(int(within_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not true in time")


async def cli(db: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_gateway, *args, cwd=cwd, env={"GATEWAY_DATABASE_URL": db})


async def running_status(admin: Admin) -> dict[str, Any]:
    status, body = await admin.call("GET", "/admin/policy")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def marked(folder: Path) -> str:
    marker = folder / ".policy-version"
    return marker.read_text() if marker.exists() else ""


async def wait_up_to_date(admin: Admin, folder: Path, version: int) -> None:
    """The folder's marker names `version`, and it is still fine after the watcher looked
    again (a folder the gateway rewrote and then refused would show a problem)."""
    for _ in range(160):
        body = await running_status(admin)
        if f"version: {version}\n" in marked(folder) and "folder" not in body:
            await asyncio.sleep(1.5)
            body = await running_status(admin)
            assert body["version"] == version and "folder" not in body, body.get("folder")
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the folder never held version {version}: {body.get('folder')}")


async def put_empty_bundle(admin: Admin) -> None:
    status, body = await admin.call(
        "PUT", "/admin/policy", {"bundle": {}, "reason": "empty", "base_version": 1}
    )
    assert status == 200, body
    assert body["version"] == 2


async def admin_of(gw: RunningGateway, http: aiohttp.ClientSession) -> Admin:
    return Admin(gw.origin, http, await gw.token(scopes=["gateway:admin"]))


async def test_the_watched_folder_holding_an_empty_bundle_stays_valid_and_follows_a_rollback(
    tmp_path: Path,
) -> None:
    """PUT an empty bundle: the folder keeps a YAML file (no "no *.yaml" refusal); a rollback
    to version 1 then rewrites it, and GET /admin/policy shows no folder problem."""
    async with running_gateway(tmp_path, ADMIN_POLICY) as gw, aiohttp.ClientSession() as http:
        admin = await admin_of(gw, http)
        folder = gw.settings.policy_dir
        await put_empty_bundle(admin)
        await wait_up_to_date(admin, folder, 2)
        assert list(folder.glob("*.yaml")), sorted(p.name for p in folder.iterdir())
        status, body = await admin.call(
            "POST", "/admin/policy/rollback", {"version": 1, "reason": "back"}
        )
        assert status == 200, body
        await wait_up_to_date(admin, folder, 3)
        texts = "".join(p.read_text() for p in folder.glob("*.yaml"))
        assert "mock-large" in texts


async def test_a_folder_left_without_yaml_by_an_empty_bundle_recovers_on_rollback(
    tmp_path: Path,
) -> None:
    """A folder an earlier gateway left with no YAML file for an empty version (only the
    marker) holds no edit: a rollback brings it up to date."""
    async with running_gateway(tmp_path, ADMIN_POLICY) as gw, aiohttp.ClientSession() as http:
        admin = await admin_of(gw, http)
        folder = gw.settings.policy_dir
        await put_empty_bundle(admin)
        await wait_up_to_date(admin, folder, 2)
        for path in folder.glob("*.yaml"):
            path.unlink()  # as the earlier export of an empty bundle left it
        await asyncio.sleep(1.5)
        status, body = await admin.call(
            "POST", "/admin/policy/rollback", {"version": 1, "reason": "back"}
        )
        assert status == 200, body
        await wait_up_to_date(admin, folder, 3)
        texts = "".join(p.read_text() for p in folder.glob("*.yaml"))
        assert "mock-large" in texts


async def test_an_empty_version_exports_checks_and_applies_back(tmp_path: Path) -> None:
    """`policy export DIR --version 2` of an empty bundle writes a YAML file that
    `policy check`, `diff` and `apply` read as that same empty bundle."""
    async with running_gateway(tmp_path, ADMIN_POLICY) as gw, aiohttp.ClientSession() as http:
        admin = await admin_of(gw, http)
        db = gw.settings.database_url
        await put_empty_bundle(admin)
        status, _ = await admin.call(
            "POST", "/admin/policy/rollback", {"version": 1, "reason": "back"}
        )
        assert status == 200
        out = tmp_path / "out"
        done = await cli(db, "policy", "export", str(out), "--version", "2", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert list(out.glob("*.yaml")), sorted(p.name for p in out.iterdir())
        checked = await cli(db, "policy", "check", str(out), cwd=tmp_path)
        assert checked.returncode == 0, checked.stderr
        diffed = await cli(db, "policy", "diff", str(out), cwd=tmp_path)
        assert diffed.returncode == 0, diffed.stderr
        applied = await cli(db, "policy", "apply", str(out), "--force", cwd=tmp_path)
        assert applied.returncode == 0, applied.stderr
        running = await gw.services.policy_versions.current()
    assert running is not None and running.bundle == {} and running.version == 4
