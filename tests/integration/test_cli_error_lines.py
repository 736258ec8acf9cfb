"""Every refusal of the CLI starts with `error: `, its own checks and the flag parser's alike:
a script greps one prefix, and a person reads one shape (no boxed panel)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.processes import free_port, run_gateway

NO_REDIS = {"GATEWAY_REDIS_URL": ""}
EXAMPLE_POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        (("token", "--team", "demo", "--ttl", "999999"), {}, 2, "error: --ttl 999999 is longer"),
        (("token", "--team", "demo", "--ttl", "0"), {}, 2, "error: Invalid value for '--ttl'"),
        (("token",), {}, 2, "error: Missing option '--team'"),
        (("no-such-command",), {}, 2, "error: No such command 'no-such-command'"),
        (("policy", "history", "--limit", "x"), {}, 2, "error: Invalid value for '--limit'"),
        (
            ("policy", "apply", "policies", "--reason", "x" * 1001),
            {},
            2,
            "error: Invalid value for '--reason': at most 1000 characters",
        ),
        (("cache", "clear", "--team", ""), {}, 1, "error: --team and --model need a value"),
        (("cache", "clear"), NO_REDIS, 2, "error: the response cache is in-process"),
        (("serve", "--workers", "2"), NO_REDIS, 2, "error: --workers 2 needs GATEWAY_REDIS_URL"),
    ],
    ids=[
        "token-ttl-too-long",
        "token-ttl-zero",
        "token-no-team",
        "unknown-command",
        "history-limit-not-a-number",
        "reason-too-long",
        "cache-empty-team",
        "cache-in-process",
        "serve-workers-without-redis",
    ],
)
def test_a_refusal_is_an_error_line(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], code: int, says: str
) -> None:
    """The first line of stderr is the refusal, `error: ...`; no panel, no traceback."""
    done = run_gateway(*args, cwd=tmp_path, env={"GATEWAY_PORT": "0", **env})
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines and lines[0].startswith(says), lines
    assert "╭" not in done.stderr and "Traceback" not in done.stderr
    assert not [line for line in lines[1:] if line.startswith("error: ")]  # one refusal
    assert done.stdout == ""


def test_a_parser_refusal_still_shows_the_usage_and_where_help_is(tmp_path: Path) -> None:
    """After its `error:` line, a refused flag shows the command's usage and its --help."""
    done = run_gateway("token", "--ttl", "0", "--team", "demo", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[1:] == [
        "Usage: gateway token [OPTIONS]",
        "Try 'gateway token --help' for help.",
    ]


def test_usage_with_no_running_policy_is_an_error_line(tmp_path: Path) -> None:
    """`gateway usage` on a database no policy version runs in: `error: ...`, exit 1."""
    assert run_gateway("migrate", cwd=tmp_path).returncode == 0
    nowhere = f"http://127.0.0.1:{free_port()}"
    done = run_gateway("usage", "demo", "--server", nowhere, cwd=tmp_path, env=NO_REDIS)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "error: no policy version is running yet"


def test_bare_commands_still_print_their_help(tmp_path: Path) -> None:
    """`gateway` and `gateway policy` alone print help (exit 2), with no error line."""
    for args in ((), ("policy",)):
        done = run_gateway(*args, cwd=tmp_path)
        assert done.returncode == 2
        assert "Usage: gateway" in done.stdout + done.stderr
        assert "error:" not in done.stdout + done.stderr


def test_a_commands_warning_is_a_warning_line(tmp_path: Path) -> None:
    """What a command logs as a warning (here: a folder's `.policy-version` that is no
    marker) reaches stderr as a `warning: ` line, never a bare one."""
    folder = tmp_path / "policies"
    shutil.copytree(EXAMPLE_POLICIES, folder)
    assert run_gateway("migrate", cwd=tmp_path).returncode == 0
    applied = run_gateway("policy", "apply", str(folder), cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    (folder / ".policy-version").write_text("garbage\n")
    shown = run_gateway("policy", "diff", str(folder), cwd=tmp_path)
    lines = [line for line in shown.stderr.splitlines() if "is not a policy version marker" in line]
    assert lines and all(line.startswith("warning: ") for line in lines), shown.stderr
