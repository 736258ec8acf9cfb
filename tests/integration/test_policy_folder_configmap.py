"""A policy folder that can hold no `.policy-version` (SPEC §4): the Helm chart's
ConfigMap, compose's `:ro` mount. Probe p7: a revert of its files (`helm rollback`, a
git revert) was not applied when a pod started (the folder "matched an older
version"), and after one admin-API change every later ConfigMap edit was refused,
even one made the way the refusal says (the running version exported, the edits
merged into it). Now the version last made from the folder stands in for its marker,
and an edit that has taken in every change since its base is based on the running
version.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.policy.bundle_text import MARKER_NAME
from gateway.policy.service import PolicyConflict
from tests.integration.test_policy_folder_foreign import POLICY  # the same small bundle
from tests.support.gateway import running_gateway

WITH_EXTRA = POLICY + "  extra: {models: [small]}\n"


@contextmanager
def configmap(folder: Path, text: str) -> Iterator[None]:
    """`folder` holding `text` and no marker, made read-only as the probe did (`chattr +i`:
    root, on a file system with the flag; even root cannot write it then)."""
    (folder / MARKER_NAME).unlink(missing_ok=True)
    (folder / "bundle.yaml").write_text(text)
    paths = [str(folder / "bundle.yaml"), str(folder)]
    if shutil.which("chattr") is None or (
        subprocess.run(["chattr", "+i", *paths], capture_output=True).returncode != 0
    ):
        pytest.skip("a read-only folder needs `chattr +i` (root, ext4 or the like)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *paths], check=True)


def _teams(bundle: dict[str, object]) -> list[str]:
    return sorted(bundle["teams"])  # type: ignore[call-overload]


async def _start(tmp_path: Path, version: int) -> tuple[int, list[str], str | None]:
    """A pod's start, once its folder watcher has made `version` run or said why not:
    the running version, its teams and the folder's problem, if any."""
    async with running_gateway(tmp_path, None) as gw:
        service = gw.services.policy_versions
        for _ in range(120):
            if gw.services.policy.version >= version or service.folder_status() is not None:
                break
            await asyncio.sleep(0.05)
        running = await service.current()
        assert running is not None
        status = service.folder_status()
        return running.version, _teams(running.bundle), status and status["problem"]


async def test_a_configmap_set_back_to_older_content_is_applied_at_start(tmp_path: Path) -> None:
    """A, then B, then A again (helm rollback), one pod start each: the revert is
    version 3, with A's teams; it stayed version 2 ("the folder is out of date")."""
    folder = tmp_path / "policies"
    folder.mkdir()
    with configmap(folder, POLICY):
        assert (await _start(tmp_path, 1))[:2] == (1, ["demo"])
    with configmap(folder, WITH_EXTRA):
        assert (await _start(tmp_path, 2))[:2] == (2, ["demo", "extra"])
    with configmap(folder, POLICY):
        version, teams, problem = await _start(tmp_path, 3)
    assert (version, teams, problem) == (3, ["demo"], None)


async def test_a_configmap_that_took_in_an_admin_change_is_applied(tmp_path: Path) -> None:
    """After an admin-API change, the ConfigMap as it was (no change of its own) is only
    out of date; one edited without the change is refused; the running version
    exported with the edit merged into it (no marker) is applied, keeping both. It was
    refused as "based on version 1" whatever the ConfigMap held."""
    folder = tmp_path / "policies"
    folder.mkdir()
    with configmap(folder, POLICY):
        async with running_gateway(tmp_path, None) as gw:
            service = gw.services.policy_versions
            await service.patch_team(
                "demo", {"limits": {"rpm": 90}}, author="admin", reason="", base_version=1
            )
            exported = await service.current()
    assert exported is not None and exported.version == 2

    with configmap(folder, POLICY):  # the pods restart on the unchanged ConfigMap
        version, _, problem = await _start(tmp_path, 3)
    assert version == 2 and problem is not None
    assert "holds version 1, not the running version 2" in problem

    with configmap(folder, WITH_EXTRA):  # an edit that has not seen the change
        version, _, problem = await _start(tmp_path, 3)
    assert version == 2 and problem is not None and "admin-API change" in problem

    merged = POLICY.replace('demo: {models: ["*"]}', 'demo: {models: ["*"], limits: {rpm: 90}}')
    with configmap(folder, merged + "  extra: {models: [small]}\n"):
        version, teams, problem = await _start(tmp_path, 3)
    assert (version, teams, problem) == (3, ["demo", "extra"], None)
    async with running_gateway(tmp_path, None) as gw:
        running = await gw.services.policy_versions.current()
    assert running is not None
    assert running.bundle["teams"]["demo"]["limits"] == {"rpm": 90}


async def test_policy_apply_of_a_folder_that_took_in_the_change_goes_through(
    tmp_path: Path,
) -> None:
    """The same rule for `policy apply DIR` without a marker: a merged folder is applied,
    a stale one still refused."""
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(POLICY)
    async with running_gateway(tmp_path, None) as gw:
        service = gw.services.policy_versions
        await service.patch_team(
            "demo", {"limits": {"rpm": 90}}, author="admin", reason="", base_version=1
        )
        other = tmp_path / "copy"
        other.mkdir()
        (other / "bundle.yaml").write_text(POLICY)
        await service.bootstrap(other)  # nothing: a version runs
        (folder / MARKER_NAME).unlink(missing_ok=True)
        (folder / "bundle.yaml").write_text(WITH_EXTRA)
        with pytest.raises(PolicyConflict):
            await service.apply_folder(folder, author="cli", reason="")
        merged = WITH_EXTRA.replace(
            'demo: {models: ["*"]}', 'demo: {models: ["*"], limits: {rpm: 90}}'
        )
        (folder / "bundle.yaml").write_text(merged)
        plan = await service.plan_folder(folder)
        applied = await service.apply_folder(folder, author="cli", reason="")
    assert plan.conflict is None and plan.base == 2
    assert applied.version.version == 3
    assert _teams(applied.version.bundle) == ["demo", "extra"]
