"""A policy folder never silently undoes a change it did not see (SPEC §4).

Admins work on copies of the policy folder; API edits land in between. A
folder without a `.policy-version` marker is judged by its content and by
where it was last applied from, never by "the newest version made from some
folder".
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import aiohttp

from gateway.policy import bundle_text
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.processes import run_gateway

POLICY = """\
providers:
  demo: {type: mock}
models:
  small: {deployments: [{provider: demo, model: mock-small}]}
teams:
  demo: {models: ["*"]}
  search: {models: [small]}
"""
NARROWED = POLICY.replace('demo: {models: ["*"]}', "demo: {models: [small]}")


def gateway(*args: str, db: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_gateway(*args, cwd=cwd, env={"GATEWAY_DATABASE_URL": db})


async def patch_search_limits(gw: RunningGateway) -> None:
    """Version 2, through the admin API: a change no folder has seen."""
    token = await gw.token(team="demo", scopes=["gateway:admin"])
    async with aiohttp.ClientSession() as http:
        async with http.patch(
            f"{gw.origin}/admin/teams/search",
            json={"changes": {"limits": {"rpm": 7}}, "base_version": 1},
            headers={"authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 200, await response.text()


def export_edit_apply(tmp_path: Path, db: str) -> None:
    """Version 3: someone exports the running version, edits it and applies it."""
    theirs = tmp_path / "theirs"
    assert gateway("policy", "export", str(theirs), db=db, cwd=tmp_path).returncode == 0
    models = theirs / "models.yaml"
    models.write_text(models.read_text().replace("mock-small", "mock-small-2"))
    done = gateway("policy", "apply", str(theirs), db=db, cwd=tmp_path)
    assert "version 3" in done.stdout, done.stderr


async def test_a_copy_made_before_an_api_change_is_refused(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, POLICY) as gw:
        db = gw.settings.database_url
        mine = tmp_path / "mine"
        shutil.copytree(tmp_path / "policies", mine)  # version 1's files, no marker
        await patch_search_limits(gw)
        export_edit_apply(tmp_path, db)
        (mine / "bundle.yaml").write_text(NARROWED)
        refused = gateway("policy", "apply", str(mine), db=db, cwd=tmp_path)
        running = await gw.services.policy_versions.current()
    assert refused.returncode == 1
    assert "does not say which version it is based on" in refused.stderr
    assert "gateway policy export NEWDIR" in refused.stderr
    assert running is not None and running.version == 3
    assert running.bundle["teams"]["search"]["limits"] == {"rpm": 7}


async def test_the_served_folder_edited_after_a_restart_does_not_undo_an_api_change(
    tmp_path: Path,
) -> None:
    """A restart on old files (no marker) brings them up to date first; an edit then keeps the change."""
    async with running_gateway(tmp_path, POLICY) as gw:
        await patch_search_limits(gw)
        export_edit_apply(tmp_path, gw.settings.database_url)
    # Old files deployed afresh, with no marker: a copy of version 1, not an edit (under the
    # marker of a later version, they would be an edit, refused here: see
    # test_policy_folder_offline_edit.py).
    (tmp_path / "policies" / bundle_text.MARKER_NAME).unlink(missing_ok=True)
    async with running_gateway(tmp_path, POLICY) as gw:  # the folder holds version 1 again
        bundle = tmp_path / "policies" / "bundle.yaml"
        for _ in range(50):  # the watcher rewrites the unedited folder to version 3
            if "rpm: 7" in bundle.read_text():
                break
            await asyncio.sleep(0.1)
        assert "rpm: 7" in bundle.read_text() and "mock-small-2" in bundle.read_text()
        assert gw.services.policy.version == 3
        narrowed = bundle.read_text().replace("- '*'", "- small")
        assert narrowed != bundle.read_text()
        bundle.write_text(narrowed)
        for _ in range(50):
            running = await gw.services.policy_versions.current()
            if running is not None and running.version == 4:
                break
            await asyncio.sleep(0.1)
    assert running is not None and running.version == 4
    assert running.bundle["teams"]["search"]["limits"] == {"rpm": 7}
    assert running.bundle["teams"]["demo"]["models"] == ["small"]


async def test_the_served_folder_edited_in_place_is_still_applied(tmp_path: Path) -> None:
    """The folder `serve` bootstrapped from is known by its path: its edits apply."""
    async with running_gateway(tmp_path, POLICY) as gw:
        pass
    async with running_gateway(tmp_path, POLICY) as gw:  # a restart forgets the watcher's state
        (tmp_path / "policies" / "bundle.yaml").write_text(NARROWED)
        for _ in range(50):
            running = await gw.services.policy_versions.current()
            if running is not None and running.version == 2:
                break
            await asyncio.sleep(0.1)
    assert running is not None and running.version == 2
    assert running.bundle["teams"]["demo"]["models"] == ["small"]
