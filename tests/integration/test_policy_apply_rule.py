"""SPEC §4's apply rule, run as an operator would: the real `gateway policy` CLI and a
serving gateway watching its folder.

A folder goes through (the diff shown) unless the running version holds an
admin-API change or a rollback the folder has not seen; `--force` overrides;
the watched folder is brought up to date when the policy moves on without it.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import aiohttp

from tests.support.admin import ADMIN_POLICY
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.processes import run_gateway

POLICY = ADMIN_POLICY


def folder(path: Path, text: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "bundle.yaml").write_text(text)
    return path


async def cli(db: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_gateway, *args, cwd=cwd, env={"GATEWAY_DATABASE_URL": db})


async def until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    for _ in range(int(within_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not true in time")


async def patch_search(gw: RunningGateway, changes: dict, base: int) -> None:
    token = await gw.token(scopes=["gateway:admin"], subject="api-user")
    async with aiohttp.ClientSession() as http:
        async with http.patch(
            f"{gw.origin}/admin/teams/search",
            json={"changes": changes, "base_version": base, "reason": "api"},
            headers={"authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 200, await response.text()


def test_a_fresh_folder_goes_through_after_another_folders_apply(tmp_path: Path) -> None:
    """Apply A, then a never-exported folder B: B becomes the next version, its diff shown."""
    db = f"sqlite+aiosqlite:///{tmp_path}/g.db"
    env = {"GATEWAY_DATABASE_URL": db}
    a = folder(tmp_path / "a", POLICY)
    b = folder(tmp_path / "b", POLICY.replace("[small, large]", "[small]"))
    assert run_gateway("migrate", cwd=tmp_path, env=env).returncode == 0
    first = run_gateway("policy", "apply", str(a), cwd=tmp_path, env=env)
    assert first.returncode == 0 and "policy version 1" in first.stdout, first.stderr
    preview = run_gateway("policy", "diff", str(b), cwd=tmp_path, env=env)
    assert preview.returncode == 0 and "-    - large" in preview.stdout
    assert "refuse" not in preview.stderr and "None" not in preview.stdout + preview.stderr
    second = run_gateway("policy", "apply", str(b), cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert "-    - large" in second.stdout  # the diff it applied
    assert "policy version 2 (was 1)" in second.stdout
    again = run_gateway("policy", "apply", str(a), cwd=tmp_path, env=env)  # back to A's files
    assert again.returncode == 0 and "policy version 3 (was 2)" in again.stdout, again.stderr


async def test_an_api_change_the_folder_has_not_seen_is_refused_and_force_overrides(
    tmp_path: Path,
) -> None:
    """PATCH through the admin API, then apply a folder made before it: refused, with the way
    out; `--force` applies it."""
    async with running_gateway(tmp_path, POLICY) as gw:
        db = gw.settings.database_url
        mine = folder(
            tmp_path / "mine", POLICY.replace('demo: {models: ["*"]}', "demo: {models: [small]}")
        )
        await patch_search(gw, {"limits": {"rpm": 7}}, base=1)
        preview = await cli(db, "policy", "diff", str(mine), cwd=tmp_path)
        assert "`apply` would refuse it" in preview.stderr
        refused = await cli(db, "policy", "apply", str(mine), cwd=tmp_path)
        assert refused.returncode == 1
        assert "version 2 by api-user" in refused.stderr
        assert "an admin-API change (version 2)" in refused.stderr
        assert "gateway policy export NEWDIR" in refused.stderr
        assert f"gateway policy apply {mine} --force" in refused.stderr
        assert "None" not in refused.stderr
        assert gw.services.policy.version == 2
        forced = await cli(db, "policy", "apply", str(mine), "--force", cwd=tmp_path)
        assert forced.returncode == 0 and "policy version 3" in forced.stdout, forced.stderr
        running = await gw.services.policy_versions.current()
        assert running is not None and "limits" not in running.bundle["teams"]["search"]


async def test_after_an_apply_of_another_folder_the_watched_folder_is_brought_up_to_date(
    tmp_path: Path,
) -> None:
    """`serve` watches policies/; `policy apply other/` rewrites policies/ to the new version,
    and a later edit of policies/ is applied on top of it."""
    async with running_gateway(tmp_path, POLICY) as gw:
        db = gw.settings.database_url
        watched = gw.settings.policy_dir / "bundle.yaml"
        other = folder(tmp_path / "other", POLICY.replace("mock-large", "mock-large-2"))
        applied = await cli(db, "policy", "apply", str(other), cwd=tmp_path)
        assert applied.returncode == 0, applied.stderr
        await until(lambda: "mock-large-2" in watched.read_text())
        edited = watched.read_text().replace("    - large\n", "")
        assert edited != watched.read_text()
        watched.write_text(edited)
        await until(lambda: gw.services.policy.version == 3)
        running = gw.services.policy.current()
        assert not running.teams["search"].allows("large")
        assert running.models["large"].deployments[0].model == "mock-large-2"


async def test_after_a_rollback_the_watched_folder_is_brought_up_to_date(tmp_path: Path) -> None:
    """A rollback moves the policy back; the watched folder follows, and its next edit applies."""
    async with running_gateway(tmp_path, POLICY) as gw:
        watched = gw.settings.policy_dir / "bundle.yaml"
        await patch_search(gw, {"models": ["small"]}, base=1)
        await until(lambda: "- large" not in watched.read_text().split("search:")[1])
        rolled = await cli(gw.settings.database_url, "policy", "rollback", "1", cwd=tmp_path)
        assert rolled.returncode == 0, rolled.stderr
        await until(lambda: gw.services.policy.version == 3)
        await until(lambda: "- large" in watched.read_text().split("search:")[1])
        watched.write_text(watched.read_text().replace("- '*'", "- small"))
        await until(lambda: gw.services.policy.version == 4)
        running = gw.services.policy.current()
        assert not running.teams["demo"].allows("large")
        assert running.teams["search"].allows("large")


async def test_a_watched_folder_holding_an_edit_is_not_rewritten_and_status_says_so(
    tmp_path: Path,
) -> None:
    """An invalid edit sits in the folder when an API change lands: the folder is kept, and
    GET /admin/policy says it is not the running version and why."""
    async with running_gateway(tmp_path, POLICY) as gw:
        watched = gw.settings.policy_dir / "bundle.yaml"
        broken = POLICY.replace("[small, large]", "[ghost]")
        watched.write_text(broken)
        await asyncio.sleep(1.5)
        await patch_search(gw, {"limits": {"rpm": 7}}, base=1)
        await asyncio.sleep(1.5)
        assert watched.read_text() == broken
        token = await gw.token(scopes=["gateway:admin"])
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{gw.origin}/admin/policy", headers={"authorization": f"Bearer {token}"}
            ) as response:
                body = await response.json()
        assert body["version"] == 2
        status = body["folder"]
        assert status["up_to_date"] is False and status["path"] == str(gw.settings.policy_dir)
        assert "unknown model 'ghost'" in status["problem"]


async def test_an_export_edited_back_to_an_older_version_is_told_apart_from_a_stale_folder(
    tmp_path: Path,
) -> None:
    """PATCH (v2), export (marker v2), edit the files back to exactly v1: refused (an old
    copy put back would look the same), and the refusal says the folder holds version 1
    although exported at 2, and that `--force` applies it, instead of advising the export
    it already is."""
    async with running_gateway(tmp_path, POLICY) as gw:
        db = gw.settings.database_url
        await patch_search(gw, {"limits": {"rpm": 7}}, base=1)
        exported = tmp_path / "exported"
        done = await cli(db, "policy", "export", str(exported), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        for path in exported.glob("*.yaml"):
            path.unlink()
        folder(exported, POLICY)  # the files of version 1 again
        refused = await cli(db, "policy", "apply", str(exported), cwd=tmp_path)
        assert refused.returncode == 1
        assert "holds exactly version 1, although it was exported at version 2" in refused.stderr
        assert f"gateway policy apply {exported} --force" in refused.stderr
        assert "merge your edits" not in refused.stderr
        forced = await cli(db, "policy", "apply", str(exported), "--force", cwd=tmp_path)
        assert forced.returncode == 0 and "policy version 3" in forced.stdout, forced.stderr
