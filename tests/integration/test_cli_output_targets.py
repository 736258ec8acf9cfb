"""`-o PATH` writes to the file PATH names, as a shell's `>` does: a symlink is followed, a
FIFO or device is written into (never replaced), and `-` is stdout, for every command
that takes `-o`. Only a regular file (or none) is replaced, atomically."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.processes import GATEWAY
from tests.support.processes import run_gateway as run


def _schema_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run("policy", "schema", *args, cwd=cwd)


def _is_schema(text: str) -> bool:
    return "$schema" in json.loads(text)


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    """A folder whose SQLite database is migrated (an empty ledger, for `report usage`)."""
    assert run("migrate", cwd=tmp_path).returncode == 0
    return tmp_path


def test_policy_schema_through_a_symlink_writes_its_target(tmp_path: Path) -> None:
    """`ln -s tgt.txt lnk.json; policy schema -o lnk.json`: the link stays, tgt.txt holds the
    schema; the link used to be replaced by a regular file and tgt.txt left unchanged."""
    (tmp_path / "tgt.txt").write_text("old\n")
    (tmp_path / "lnk.json").symlink_to("tgt.txt")

    ran = _schema_run("-o", "lnk.json", cwd=tmp_path)

    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "lnk.json").is_symlink()
    assert os.readlink(tmp_path / "lnk.json") == "tgt.txt"
    assert _is_schema((tmp_path / "tgt.txt").read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lnk.json", "tgt.txt"]


def test_a_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    """A link to a file not there yet: the file is created, as `>` creates it."""
    (tmp_path / "out").mkdir()
    (tmp_path / "lnk.json").symlink_to("out/schema.json")

    ran = _schema_run("-o", "lnk.json", cwd=tmp_path)

    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "lnk.json").is_symlink()
    assert _is_schema((tmp_path / "out" / "schema.json").read_text())


def test_replacing_a_regular_file_keeps_its_mode(tmp_path: Path) -> None:
    """An existing file is replaced atomically and keeps its permissions, as with `>`."""
    target = tmp_path / "schema.json"
    target.write_text("old\n")
    target.chmod(0o640)

    ran = _schema_run("-o", "schema.json", cwd=tmp_path)

    assert ran.returncode == 0, ran.stderr
    assert _is_schema(target.read_text())
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_replacing_a_file_drops_its_set_id_bits(tmp_path: Path) -> None:
    """A replaced file keeps its permissions but never a setuid or setgid bit."""
    target = tmp_path / "schema.json"
    target.write_text("old\n")
    target.chmod(0o6755)

    ran = _schema_run("-o", "schema.json", cwd=tmp_path)

    assert ran.returncode == 0, ran.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


def _read_through_fifo(fifo: Path, args: list[str], cwd: Path) -> bytes:
    """Run `gateway ARGS` writing into `fifo` and return what came through it.

    The test holds the FIFO open for reading and writing (non-blocking), so the gateway's
    open never waits and the test never hangs, whether or not it writes into the FIFO.
    """
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    received = bytearray()
    try:
        process = subprocess.Popen(
            [GATEWAY, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                received += os.read(fd, 65536)
                continue
            except BlockingIOError:
                pass
            if process.poll() is not None:
                break
            assert time.monotonic() < deadline, "the command did not finish"
            time.sleep(0.02)
        _, stderr = process.communicate()
        assert process.returncode == 0, stderr
    finally:
        os.close(fd)
    return bytes(received)


def test_policy_schema_into_a_fifo_writes_through_it(tmp_path: Path) -> None:
    """`-o FIFO` writes the schema into the pipe and leaves the FIFO in place; it used to be
    replaced by a regular file (and a device node likewise)."""
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)

    received = _read_through_fifo(fifo, ["policy", "schema", "-o", "pipe.json"], tmp_path)

    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert _is_schema(received.decode())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.json"]


def test_policy_schema_to_dash_is_stdout(tmp_path: Path) -> None:
    """`-o -` is stdout, as for `report usage`; it used to write a file named `-`."""
    ran = _schema_run("-o", "-", cwd=tmp_path)

    assert ran.returncode == 0, ran.stderr
    assert _is_schema(ran.stdout)
    assert not (tmp_path / "-").exists()


def test_report_usage_through_a_symlink_writes_its_target(migrated: Path) -> None:
    """`report usage -o lnk2.csv` (a link to tgt2.csv): the CSV lands in tgt2.csv."""
    (migrated / "tgt2.csv").write_text("old\n")
    (migrated / "lnk2.csv").symlink_to("tgt2.csv")

    ran = run("report", "usage", "--month", "2026-11", "-o", "lnk2.csv", cwd=migrated)

    assert ran.returncode == 0, ran.stderr
    assert (migrated / "lnk2.csv").is_symlink()
    assert (migrated / "tgt2.csv").read_text().startswith("month,")


def test_report_usage_into_a_fifo_writes_through_it(migrated: Path) -> None:
    """`report usage -o FIFO` writes the CSV into the pipe; the FIFO stays."""
    fifo = migrated / "usage.csv"
    os.mkfifo(fifo)

    args = ["report", "usage", "--month", "2026-11", "-o", "usage.csv"]
    received = _read_through_fifo(fifo, args, migrated)

    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert received.decode().startswith("month,")
