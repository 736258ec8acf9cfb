"""`gateway serve` with a policy folder named explicitly (`--policies DIR`,
`GATEWAY_POLICY_DIR`) that does not exist is refused at start, as on a new database,
when the database already holds a version too: a mis-mounted folder would otherwise go
unnoticed, the replicas running an old version forever. The default `./policies`,
named by nobody, keeps serving the database's version."""

from __future__ import annotations

import os

import httpx2 as httpx
import pytest

from gateway.policy.example import write_example
from tests.support.processes import free_port, run_gateway
from tests.support.serving import serve_process

ENV = {k: v for k, v in os.environ.items() if k != "GATEWAY_POLICY_DIR"}


@pytest.fixture
def applied(tmp_path):
    """A folder whose SQLite database holds policy version 1 (from `bundle/`)."""
    write_example(tmp_path / "bundle")
    migrated = run_gateway("migrate", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    done = run_gateway("policy", "apply", "bundle", cwd=tmp_path, env={"GATEWAY_POLICY_DIR": ""})
    assert done.returncode == 0, done.stderr
    return tmp_path


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_missing_policy_folder_named_explicitly_is_refused(applied, how):
    missing = applied / "no-such-folder"
    port = ["--port", str(free_port())]
    if how == "flag":
        done = run_gateway("serve", *port, "--policies", str(missing), cwd=applied, timeout=15)
    else:
        env = {"GATEWAY_POLICY_DIR": str(missing)}
        done = run_gateway("serve", *port, cwd=applied, env=env, timeout=15)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {missing}: policy directory not found"], done.stderr


def test_a_policy_folder_that_is_a_file_is_refused(applied):
    (applied / "file.yaml").write_text("providers: {}\n")
    port = ["--port", str(free_port())]
    done = run_gateway("serve", *port, "--policies", "file.yaml", cwd=applied, timeout=15)
    assert done.returncode == 1, done.stderr
    assert (
        "error: file.yaml: a file, not a policy directory: give the folder that holds its files"
        in done.stderr.splitlines()
    )


def test_the_default_folder_missing_still_serves_the_databases_version(applied):
    """No flag, no setting, no ./policies: the database's version is served, as before."""
    assert not (applied / "policies").exists()
    with serve_process(applied, base_env=ENV) as server, httpx.Client() as http:
        assert http.get(f"{server.origin}/readyz").status_code == 200
    assert "enforcing policy version 1 from the database" in server.stderr()


def test_a_missing_folder_on_a_new_database_is_refused_before_the_database_is_made(tmp_path):
    """Probe p7: the refusal came after the database file was created and migrated."""
    done = run_gateway(
        "serve", "--port", str(free_port()), "--policies", "nope", cwd=tmp_path, timeout=15
    )
    assert done.returncode == 1, done.stderr
    assert "error: nope: policy directory not found" in done.stderr.splitlines()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no database, no spool
