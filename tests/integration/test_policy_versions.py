"""Versioned policies (gateway/policy/service.py, sync.py) on real SQLite and PostgreSQL.

The store through `PolicyService`, the `gateway policy` CLI in subprocesses
against the database of a running gateway, and folder edits under `serve`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import openai
import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import build_app
from gateway.db import create_engine
from gateway.policy.errors import PolicyInvalid
from gateway.policy.loader import load_bundle
from gateway.policy.service import (
    PolicyAction,
    PolicyConflict,
    PolicyService,
    VersionNotFound,
)
from gateway.settings import Settings
from tests.support.gateway import RunningGateway, running_gateway, serve_asgi
from tests.support.processes import GATEWAY

POLICY = """\
providers:
  demo: {type: mock}
  secret: {type: openai, api_key: "${TEST_POLICY_API_KEY}"}
models:
  small: {deployments: [{provider: demo, model: mock-small}]}
  large: {deployments: [{provider: demo, model: mock-large}]}
teams:
  demo: {models: ["*"]}
  search: {models: [small, large]}
"""
BUNDLE = {
    "providers": {
        "demo": {"type": "mock"},
        "secret": {"type": "openai", "api_key": "${TEST_POLICY_API_KEY}"},
    },
    "models": {
        "small": {"deployments": [{"provider": "demo", "model": "mock-small"}]},
        "large": {"deployments": [{"provider": "demo", "model": "mock-large"}]},
    },
    "teams": {"demo": {"models": ["*"]}, "search": {"models": ["small", "large"]}},
}
SECRET = "sk-resolved-never-stored"


@pytest.fixture(autouse=True)
def _secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_POLICY_API_KEY", SECRET)


@pytest.fixture
def service(engine: AsyncEngine) -> PolicyService:
    return PolicyService(engine, os.environ)


def with_team(bundle: dict, team: str, models: list[str]) -> dict:
    return {**bundle, "teams": {**bundle["teams"], team: {"models": models}}}


# The store ----------------------------------------------------------------------------------


async def test_versions_count_up_and_history_is_newest_first(service: PolicyService) -> None:
    """Each change is the next integer, with its parent, author, reason and hash."""
    first = await service.apply(BUNDLE, author="alice", reason="start", base_version=None)
    second = await service.apply(
        with_team(BUNDLE, "search", ["small"]), author="bob", reason="narrow", base_version=1
    )
    assert (first.version.version, second.version.version) == (1, 2)
    assert second.version.parent == 1 and second.previous == 1 and second.is_new
    history = await service.history()
    assert [v.version for v in history] == [2, 1]
    assert [(v.author, v.reason) for v in history] == [("bob", "narrow"), ("alice", "start")]
    assert (await service.current()) == history[0]
    assert (await service.get(1)).bundle == BUNDLE
    assert history[0].hash != history[1].hash


async def test_the_bundle_is_stored_as_written_never_resolved(service: PolicyService) -> None:
    """`${VAR}` references stay references in versions and the audit log."""
    await service.apply(BUNDLE, author="alice", reason="", base_version=None)
    version = await service.current()
    assert version is not None
    assert version.bundle["providers"]["secret"]["api_key"] == "${TEST_POLICY_API_KEY}"
    assert SECRET not in json.dumps([e.as_json() for e in await service.audit()])
    assert (await service.compile(version)).providers["secret"].api_key == SECRET


async def test_an_equal_bundle_is_a_no_op(service: PolicyService) -> None:
    """Applying what already runs on the running base writes nothing, whatever the key order;
    on a stale base it is a conflict all the same (SPEC §5: 409)."""
    await service.apply(BUNDLE, author="alice", reason="", base_version=None)
    reordered = dict(reversed(list(BUNDLE.items())))
    again = await service.apply(reordered, author="bob", reason="", base_version=1)
    assert not again.is_new and again.version.version == 1
    with pytest.raises(PolicyConflict):
        await service.apply(reordered, author="bob", reason="", base_version=None)
    assert len(await service.history()) == 1 and len(await service.audit()) == 1


async def test_a_stale_base_version_is_refused_saying_how_to_resolve(
    service: PolicyService,
) -> None:
    """A change made against version 1 when 2 runs is refused with 409 and a way out."""
    await service.apply(BUNDLE, author="alice", reason="", base_version=None)
    await service.apply(
        with_team(BUNDLE, "search", ["small"]), author="bob", reason="narrow", base_version=1
    )
    with pytest.raises(PolicyConflict) as refused:
        await service.apply(
            with_team(BUNDLE, "ops", ["*"]), author="carol", reason="", base_version=1
        )
    assert refused.value.status == 409 and refused.value.running == 2
    assert "version 2 by bob" in refused.value.message
    assert (
        "GET /admin/policy" in refused.value.message and "base_version 2" in refused.value.message
    )
    assert [v.version for v in await service.history()] == [2, 1]


async def test_an_invalid_bundle_is_refused_with_every_error_and_nothing_changes(
    service: PolicyService,
) -> None:
    """Schema and cross-reference errors are all listed, located; the running version stays."""
    await service.apply(BUNDLE, author="alice", reason="", base_version=None)
    broken = with_team(BUNDLE, "search", ["nope"])
    broken["providers"] = {**BUNDLE["providers"], "bad": {"type": "mock", "colour": "red"}}
    with pytest.raises(PolicyInvalid) as refused:
        await service.apply(broken, author="bob", reason="", base_version=1)
    assert [str(i) for i in refused.value.issues] == [
        "bundle: providers.bad.colour: unknown key",
        "bundle: teams.search.models[0]: unknown model 'nope'",
    ]  # a schema error does not hide the cross-references of the rest (SPEC §5)
    broken["providers"] = BUNDLE["providers"]
    broken["models"] = {
        **BUNDLE["models"],
        "x": {"deployments": [{"provider": "gone", "model": "m"}]},
    }
    with pytest.raises(PolicyInvalid) as refused:
        await service.apply(broken, author="bob", reason="", base_version=1)
    assert sorted(str(i) for i in refused.value.issues) == [
        "bundle: models.x.deployments[0].provider: unknown provider 'gone' (not in providers)",
        "bundle: teams.search.models[0]: unknown model 'nope'",
    ]
    assert [v.version for v in await service.history()] == [1]


async def test_a_missing_env_var_is_refused_naming_it(service: PolicyService, monkeypatch) -> None:
    monkeypatch.delenv("TEST_POLICY_API_KEY")
    with pytest.raises(PolicyInvalid) as refused:
        await service.apply(BUNDLE, author="alice", reason="", base_version=None)
    assert [str(i) for i in refused.value.issues] == [
        "bundle: providers.secret.api_key: environment variable TEST_POLICY_API_KEY is not set"
    ]


async def test_diff_is_a_unified_diff_of_two_versions(service: PolicyService) -> None:
    await service.apply(BUNDLE, author="alice", reason="", base_version=None)
    await service.apply(
        with_team(BUNDLE, "search", ["small"]), author="b", reason="", base_version=1
    )
    diff = await service.diff(1, 2)
    assert diff.startswith("--- version 1\n+++ version 2\n@@")
    assert "\n-    - large\n" in diff and "\n+" not in diff.split("@@", 2)[2]
    assert await service.diff(2, 2) == ""
    with pytest.raises(VersionNotFound):
        await service.diff(1, 9)


async def test_rollback_makes_a_new_version_equal_to_the_old_one(service: PolicyService) -> None:
    """History is kept: rolling back to 1 creates 3, with 1's bundle and hash."""
    await service.apply(BUNDLE, author="alice", reason="", base_version=None)
    await service.apply(
        with_team(BUNDLE, "search", ["small"]), author="b", reason="", base_version=1
    )
    back = await service.rollback(1, author="carol", reason="too narrow")
    assert back.is_new and back.version.version == 3 and back.version.parent == 2
    assert back.version.hash == (await service.get(1)).hash
    assert not (await service.rollback(1, author="carol", reason="")).is_new
    entry = (await service.audit())[0]
    assert (entry.action, entry.actor, entry.reason) == (
        PolicyAction.ROLLBACK,
        "carol",
        "too narrow",
    )
    assert entry.before == {"version": 2, "teams": {"search": {"models": ["small"]}}}
    assert entry.after == {
        "version": 3,
        "restores": 1,
        "teams": {"search": {"models": ["small", "large"]}},
    }


async def test_patch_team_merges_into_the_running_bundle(service: PolicyService) -> None:
    """A team patch changes only that team; null removes a field; unknown teams are 404."""
    await service.apply(BUNDLE, author="alice", reason="", base_version=None)
    patched = await service.patch_team(
        "search",
        {"models": ["small"], "limits": {"rpm": 60}},
        author="bob",
        reason="cap",
        base_version=1,
    )
    assert patched.version.bundle["teams"]["search"] == {"models": ["small"], "limits": {"rpm": 60}}
    assert patched.version.bundle["teams"]["demo"] == {"models": ["*"]}
    again = await service.patch_team(
        "search", {"limits": None}, author="bob", reason="", base_version=2
    )
    assert again.version.bundle["teams"]["search"] == {"models": ["small"]}
    entry = (await service.audit())[1]
    assert (entry.action, entry.target) == (PolicyAction.PATCH_TEAM, "teams.search")
    with pytest.raises(PolicyConflict):
        await service.patch_team("search", {"models": []}, author="b", reason="", base_version=1)
    with pytest.raises(Exception, match="not in the policy"):
        await service.patch_team("ghost", {"models": []}, author="b", reason="", base_version=3)


async def test_every_change_is_audited_with_before_and_after(service: PolicyService) -> None:
    await service.apply(BUNDLE, author="alice", reason="start", base_version=None)
    await service.apply(
        with_team(BUNDLE, "ops", ["small"]), author="bob", reason="ops", base_version=1
    )
    newest, first = await service.audit()
    assert (newest.actor, newest.action, newest.reason) == ("bob", PolicyAction.APPLY, "ops")
    assert newest.before == {"version": 1}
    assert newest.after == {"version": 2, "teams": {"ops": {"models": ["small"]}}}
    assert first.before == {"version": None} and first.after["version"] == 1


async def test_replicas_racing_for_the_next_version_get_one_each_or_a_conflict(
    database_url: str, engine: AsyncEngine
) -> None:
    """Two processes' services applying on the same base: one version 2, one conflict."""
    first = PolicyService(engine, os.environ)
    await first.apply(BUNDLE, author="a", reason="", base_version=None)
    other_engine = create_engine(database_url)
    try:
        second = PolicyService(other_engine, os.environ)
        results = await asyncio.gather(
            first.apply(with_team(BUNDLE, "x", ["small"]), author="a", reason="", base_version=1),
            second.apply(with_team(BUNDLE, "y", ["small"]), author="b", reason="", base_version=1),
            return_exceptions=True,
        )
    finally:
        await other_engine.dispose()
    assert sorted(type(r).__name__ for r in results) == ["Applied", "PolicyConflict"]
    assert [v.version for v in await first.history()] == [2, 1]


async def test_export_writes_sections_and_a_marker_that_apply_reads(
    service: PolicyService, tmp_path: Path
) -> None:
    """An exported folder loads back to the same hash; apply knows which version it came from."""
    await service.apply(BUNDLE, author="alice", reason="", base_version=None)
    exported = await service.export(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".policy-version",
        "models.yaml",
        "providers.yaml",
        "teams.yaml",
    ]
    assert load_bundle(tmp_path / "out").raw == BUNDLE
    assert await service.folder_base(tmp_path / "out") == exported.version == 1
    (tmp_path / "hand").mkdir()
    (tmp_path / "hand" / "a.yaml").write_text(POLICY)
    with pytest.raises(FileExistsError):
        await service.export(tmp_path / "hand")
    await service.export(tmp_path / "hand", force=True)
    assert not (tmp_path / "hand" / "a.yaml").exists()


async def test_a_folder_without_marker_is_based_on_the_newest_version_from_files(
    service: PolicyService, tmp_path: Path
) -> None:
    """Bootstrap, then an API change: the unmarked folder is stale; before it, it was not."""
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(POLICY)
    await service.bootstrap(folder)
    assert await service.folder_base(folder) == 1
    await service.patch_team(
        "search", {"models": ["small"]}, author="api", reason="", base_version=1
    )
    (folder / "bundle.yaml").write_text(POLICY + "  ops: {models: [small]}\n")
    with pytest.raises(PolicyConflict) as refused:
        await service.apply_folder(folder, author="me", reason="")
    assert "no .policy-version" not in refused.value.message
    assert f"{folder} is based on version 1" in refused.value.message
    assert "`gateway policy export NEWDIR`" in refused.value.message


# The CLI against a running gateway ----------------------------------------------------------


async def cli(gw: RunningGateway, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `gateway ARGS` on the gateway's database without blocking its event loop."""
    env = {**os.environ, "GATEWAY_DATABASE_URL": gw.settings.database_url}
    return await asyncio.to_thread(
        subprocess.run,
        [GATEWAY, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def seconds_until(condition: Callable[[], object], within_s: float = 2.0) -> float:
    """Poll an async condition every 20 ms; how long it took to hold (fail after `within_s`)."""
    start = time.monotonic()
    while True:
        if await condition():  # type: ignore[misc]
            return time.monotonic() - start
        if time.monotonic() - start > within_s:
            raise AssertionError(f"not true within {within_s} s")
        await asyncio.sleep(0.02)


def can_call(client: openai.AsyncOpenAI, model: str) -> Callable[[], object]:
    async def check() -> bool:
        try:
            await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}]
            )
        except openai.PermissionDeniedError as denied:
            assert denied.body["code"] == "model_not_allowed"
            return False
        return True

    return check


def cannot_call(client: openai.AsyncOpenAI, model: str) -> Callable[[], object]:
    allowed = can_call(client, model)

    async def check() -> bool:
        return not await allowed()

    return check


async def test_done_when_apply_enforced_rolled_back_and_audited(tmp_path: Path) -> None:
    """Narrow a team with `policy apply`: 403 within 2 s; roll back: 200 within 2 s; both audited."""
    async with running_gateway(tmp_path, POLICY) as gw:
        client = await gw.openai(team="search")
        assert await can_call(client, "large")()
        work = tmp_path / "work"
        exported = await cli(gw, "policy", "export", str(work), cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
        teams = work / "teams.yaml"
        teams.write_text(teams.read_text().replace("    - large\n", ""))
        preview = await cli(gw, "policy", "diff", str(work), cwd=tmp_path)
        assert preview.returncode == 0 and "-    - large" in preview.stdout
        applied = await cli(gw, "policy", "apply", str(work), "--reason", "no large", cwd=tmp_path)
        assert applied.returncode == 0, applied.stderr
        assert "policy version 2 (was 1)" in applied.stdout
        narrowed_s = await seconds_until(cannot_call(client, "large"))
        rolled = await cli(gw, "policy", "rollback", "1", "--reason", "undo", cwd=tmp_path)
        assert rolled.returncode == 0 and "policy version 3" in rolled.stdout
        restored_s = await seconds_until(can_call(client, "large"))
        print(f"pickup: apply {narrowed_s:.3f} s, rollback {restored_s:.3f} s")

        history = await cli(gw, "policy", "history", cwd=tmp_path)
        lines = history.stdout.splitlines()
        assert lines[0].split()[0] == "VERSION"
        assert [line.split()[0] for line in lines[1:]] == ["3", "2", "1"]
        as_json = json.loads((await cli(gw, "policy", "history", "--json", cwd=tmp_path)).stdout)
        assert [v["version"] for v in as_json] == [3, 2, 1]
        assert as_json[1]["reason"] == "no large"

        headers = {"authorization": f"Bearer {await gw.token(scopes=['gateway:admin'])}"}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{gw.origin}/admin/audit", headers=headers) as response:
                assert response.status == 200
                audit = (await response.json())["data"]
        rollback, apply = audit[0], audit[1]
        assert (apply["action"], apply["reason"]) == ("policy.apply_files", "no large")
        assert apply["before"]["teams"]["search"] == {"models": ["small", "large"]}
        assert apply["after"]["teams"]["search"] == {"models": ["small"]}
        assert (rollback["action"], rollback["after"]["restores"]) == ("policy.rollback", 1)
        assert "@" in apply["actor"]


async def test_cli_refuses_a_stale_folder_and_says_how_to_resolve(tmp_path: Path) -> None:
    """A folder exported at 1, after an API change to 2: refused, nothing overwritten."""
    async with running_gateway(tmp_path, POLICY) as gw:
        work = tmp_path / "work"
        assert (await cli(gw, "policy", "export", str(work), cwd=tmp_path)).returncode == 0
        await gw.services.policy_versions.patch_team(
            "search", {"models": ["small"]}, author="api-user", reason="api", base_version=1
        )
        (work / "teams.yaml").write_text("teams:\n  demo: {models: ['*']}\n")
        preview = await cli(gw, "policy", "diff", str(work), cwd=tmp_path)
        assert "apply` would refuse it" in preview.stderr
        refused = await cli(gw, "policy", "apply", str(work), cwd=tmp_path)
        assert refused.returncode == 1
        assert f"{work} is based on version 1" in refused.stderr
        assert "version 2 by api-user" in refused.stderr
        assert "gateway policy export NEWDIR" in refused.stderr
        assert "gateway policy apply NEWDIR" in refused.stderr
        assert (await gw.services.policy_versions.current()).version == 2  # type: ignore[union-attr]


async def test_cli_refuses_an_invalid_folder_with_file_and_line(tmp_path: Path) -> None:
    """Every error names file:line; the running version and the gateway are untouched."""
    async with running_gateway(tmp_path, POLICY) as gw:
        client = await gw.openai(team="search")
        work = tmp_path / "work"
        assert (await cli(gw, "policy", "export", str(work), cwd=tmp_path)).returncode == 0
        (work / "teams.yaml").write_text(
            "teams:\n  demo: {models: ['*']}\n  search:\n    models: [ghost]\n    colour: red\n"
        )
        refused = await cli(gw, "policy", "apply", str(work), cwd=tmp_path)
        assert refused.returncode == 1
        assert f"{work}/teams.yaml:5: teams.search.colour: unknown key" in refused.stderr
        (work / "teams.yaml").write_text(
            "teams:\n  demo: {models: ['*']}\n  search:\n    models: [ghost, small]\n"
        )
        refused = await cli(gw, "policy", "apply", str(work), cwd=tmp_path)
        assert f"{work}/teams.yaml:4: teams.search.models[0]: unknown model 'ghost'" in (
            refused.stderr
        )
        assert "Traceback" not in refused.stderr
        assert gw.services.policy.version == 1
        assert [v.version for v in await gw.services.policy_versions.history()] == [1]
        assert await can_call(client, "large")()


async def test_cli_diff_says_no_changes_for_the_running_policy(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, POLICY) as gw:
        same = await cli(gw, "policy", "diff", str(tmp_path / "policies"), cwd=tmp_path)
        assert same.returncode == 0 and same.stdout.startswith("no changes")
        bad_version = await cli(gw, "policy", "rollback", "7", cwd=tmp_path)
        assert bad_version.returncode == 1 and "no policy version 7" in bad_version.stderr


# Folder edits under serve -------------------------------------------------------------------


async def test_folder_edits_are_applied_invalid_and_stale_ones_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Edit the served folder: a new version by file:DIR; broken or stale edits are logged only."""
    async with running_gateway(tmp_path, POLICY) as gw:
        client = await gw.openai(team="search")
        folder = gw.settings.policy_dir
        (folder / "bundle.yaml").write_text(POLICY.replace("[small, large]", "[small]"))
        took = await seconds_until(cannot_call(client, "large"), within_s=3)
        print(f"file edit enforced after {took:.3f} s")
        running = await gw.services.policy_versions.current()
        assert running is not None and running.version == 2
        assert running.author == f"file:{folder}"

        (folder / "bundle.yaml").write_text(POLICY.replace("[small, large]", "[ghost]"))
        await asyncio.sleep(2)
        assert gw.services.policy.version == 2
        assert "teams.search.models[0]: unknown model 'ghost'" in caplog.text

        await gw.services.policy_versions.patch_team(
            "search", {"models": ["large"]}, author="api-user", reason="", base_version=2
        )
        (folder / "bundle.yaml").write_text(POLICY + "# back to both\n")
        await asyncio.sleep(2)
        assert gw.services.policy.version == 3
        assert "policy folder edit refused" in caplog.text
        assert "export NEWDIR" in caplog.text


async def test_configmap_symlink_swaps_are_picked_up(tmp_path: Path) -> None:
    """A Kubernetes ConfigMap update (the ..data symlink swapped) is applied like an edit."""
    folder = tmp_path / "configmap"
    (folder / "..v1").mkdir(parents=True)
    (folder / "..v1" / "bundle.yaml").write_text(POLICY)
    (folder / "..data").symlink_to("..v1")
    (folder / "bundle.yaml").symlink_to("..data/bundle.yaml")
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/gateway.db", policy_dir=folder
    )
    app = build_app(settings)
    async with serve_asgi(app):
        services = app.state.services
        assert services.policy.version == 1
        (folder / "..v2").mkdir()
        (folder / "..v2" / "bundle.yaml").write_text(POLICY.replace("[small, large]", "[small]"))
        (folder / "..tmp").symlink_to("..v2")
        os.replace(folder / "..tmp", folder / "..data")
        shutil.rmtree(folder / "..v1")

        async def swapped() -> bool:
            return services.policy.version == 2

        await seconds_until(swapped, within_s=3)
        assert not services.policy.current().teams["search"].allows("large")


async def test_a_restart_enforces_the_newest_version_not_the_unedited_folder(
    tmp_path: Path,
) -> None:
    """After a CLI change, restarting `serve` on the old folder keeps the change."""
    async with running_gateway(tmp_path, POLICY) as gw:
        work = tmp_path / "work"
        assert (await cli(gw, "policy", "export", str(work), cwd=tmp_path)).returncode == 0
        (work / "teams.yaml").write_text(
            "teams:\n  demo: {models: ['*']}\n  search: {models: [small]}\n"
        )
        assert (await cli(gw, "policy", "apply", str(work), cwd=tmp_path)).returncode == 0
    # The folder as the first gateway left it: still version 1's files, or already rewritten
    # to version 2 if its watch got there first. (Writing version 1's files again here would
    # be an edit made while stopped, which a start applies: test_policy_folder_offline_edit.)
    async with running_gateway(tmp_path, None) as gw:
        bundle = tmp_path / "policies" / "bundle.yaml"
        for _ in range(50):  # an unedited folder is brought up to date with version 2
            if yaml.safe_load(bundle.read_text())["teams"]["search"]["models"] == ["small"]:
                break
            await asyncio.sleep(0.1)
        assert yaml.safe_load(bundle.read_text())["teams"]["search"]["models"] == ["small"]
        assert gw.services.policy.version == 2
        assert [v.version for v in await gw.services.policy_versions.history()] == [2, 1]
        assert not gw.services.policy.current().teams["search"].allows("large")


def test_serve_applies_edits_of_its_policies_folder(tmp_path: Path) -> None:
    """`gateway serve --policies DIR`: an edit of DIR is enforced within about a second."""
    import socket

    import httpx2 as httpx

    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(POLICY)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GATEWAY_ACCESS_LOG": "off"}
    server = subprocess.Popen(
        [GATEWAY, "serve", "--port", str(port), "--policies", str(folder)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        origin = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stderr.read()  # type: ignore[union-attr]
            try:
                if httpx.get(f"{origin}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gateway did not come up"
            time.sleep(0.1)
        minted = subprocess.run(
            [GATEWAY, "token", "--team", "search"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        client = openai.OpenAI(
            base_url=f"{origin}/v1", api_key=minted.stdout.strip().splitlines()[-1], max_retries=0
        )
        chat = {"model": "large", "messages": [{"role": "user", "content": "hi"}]}
        client.chat.completions.create(**chat)
        (folder / "bundle.yaml").write_text(POLICY.replace("[small, large]", "[small]"))
        edited = time.monotonic()
        while True:
            try:
                client.chat.completions.create(**chat)
            except openai.PermissionDeniedError:
                break
            assert time.monotonic() - edited < 3, "the edit was not enforced"
            time.sleep(0.05)
        print(f"serve: file edit enforced after {time.monotonic() - edited:.3f} s")
        client.close()
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert "policy folder" in stderr and "applied as version 2" in stderr
    assert "Traceback" not in stderr
