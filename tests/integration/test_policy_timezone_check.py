"""`gateway policy check` refuses a timezone that is a file of the tz folder but no IANA
zone: `localtime` made each replica count budget periods from its own /etc/localtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import run_gateway

BUNDLE = """\
teams:
  search: {{models: []}}
timezone: {timezone}
"""


@pytest.mark.parametrize("timezone", ["localtime", "posixrules", "Factory", "posix/UTC"])
def test_policy_check_refuses_a_timezone_that_is_no_zone(tmp_path: Path, timezone: str) -> None:
    """`error: FILE:3: timezone: ... unknown timezone '...'`, exit 1, as for `utc`."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "a.yaml").write_text(BUNDLE.format(timezone=timezone))
    done = run_gateway("policy", "check", str(folder), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[0] == (
        f"error: {folder}/a.yaml:3: timezone: Value error, unknown timezone {timezone!r}"
    )


def test_policy_check_keeps_an_iana_timezone(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "a.yaml").write_text(BUNDLE.format(timezone="America/Argentina/Buenos_Aires"))
    done = run_gateway("policy", "check", str(folder), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
