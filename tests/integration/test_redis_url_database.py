"""A GATEWAY_REDIS_URL whose database redis-py would silently read as DB 0 (or join, `/1/2`
as DB 12) stops `gateway serve` at start: one `error:` line naming it, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import run_gateway


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://:pw-s3cret@127.0.0.1:6379/13abc", "'/13abc' is not a database number"),
        ("redis://127.0.0.1:6379/1/2", "'/1/2' is not a database number"),
        ("redis://127.0.0.1:6379/1?db=2", "the path says database 1 and ?db= says 2"),
    ],
)
def test_serve_refuses_a_redis_database_it_cannot_select(
    tmp_path: Path, url: str, says: str
) -> None:
    """`error: GATEWAY_REDIS_URL: ...` alone on stderr, exit 2; the password is not shown."""
    done = run_gateway("serve", cwd=tmp_path, env={"GATEWAY_PORT": "0", "GATEWAY_REDIS_URL": url})
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: GATEWAY_REDIS_URL: ") and says in line
    assert "s3cret" not in done.stderr
    assert not (tmp_path / "gateway.db").exists()  # refused before touching anything
