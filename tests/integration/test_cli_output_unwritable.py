"""A command whose output cannot be written (a full disk, a closed standard output)
says so in one `error: ` line and exits 1: it printed a traceback, or exited 0 having
printed nothing (a token, a client's secret lost), probe p21."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import GATEWAY

COMMANDS = [("token", "--team", "demo"), ("policy", "schema"), ("clients", "list")]


def run(
    tmp_path: Path, command: tuple[str, ...], redirect: str
) -> subprocess.CompletedProcess[str]:
    line = " ".join(shlex.quote(part) for part in (GATEWAY, *command)) + " " + redirect
    env = {**os.environ, "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/gateway.db"}
    return subprocess.run(
        ["sh", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
@pytest.mark.parametrize("redirect", [">/dev/full", ">&-"], ids=["full-disk", "closed"])
def test_unwritable_output_is_one_error_line_and_exit_1(tmp_path, command, redirect):
    assert run(tmp_path, ("migrate",), ">/dev/null").returncode == 0
    done = run(tmp_path, command, redirect)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write the output"), lines


def test_a_closed_output_creates_no_client(tmp_path):
    assert run(tmp_path, ("migrate",), ">/dev/null").returncode == 0
    assert run(tmp_path, ("clients", "create", "--team", "demo"), ">&-").returncode == 1
    listed = run(tmp_path, ("clients", "list"), "")
    assert listed.returncode == 0 and "demo" not in listed.stdout.replace("demo-", ""), listed
