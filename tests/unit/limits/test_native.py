"""The limits stage compiled with mypyc: what is built, what runs, and that the same
source still passes its tests as plain Python (the build without a C compiler)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.limits.native import COMPILED_MODULES, Build, NativeState, build_of, native_state

ROOT = Path(__file__).resolve().parents[3]
EXTENSION = "memory.cpython-311-x86_64-linux-gnu.so"


def test_the_build_hook_compiles_exactly_the_modules_native_names() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    hook = config["tool"]["hatch"]["build"]["targets"]["wheel"]["hooks"]["mypyc"]
    built = sorted(
        path.strip("/").removesuffix(".py").replace("/", ".") for path in hook["include"]
    )
    assert built == sorted(COMPILED_MODULES)


def test_a_source_file_runs_interpreted(tmp_path: Path) -> None:
    source = tmp_path / "memory.py"
    source.write_text("")
    assert build_of(str(source)) is Build.INTERPRETED


def _built(tmp_path: Path, *, source_at: int, built_at: int) -> str:
    """A module's source and its extension, each last written at the given second."""
    source, built = tmp_path / "memory.py", tmp_path / EXTENSION
    source.write_text("")
    built.write_bytes(b"")
    os.utime(source, (source_at, source_at))
    os.utime(built, (built_at, built_at))
    return str(built)


def test_an_extension_newer_than_its_source_runs_compiled(tmp_path: Path) -> None:
    assert build_of(_built(tmp_path, source_at=1_000, built_at=1_001)) is Build.COMPILED


def test_an_install_writes_the_source_a_moment_after_the_extension(tmp_path: Path) -> None:
    assert build_of(_built(tmp_path, source_at=1_002, built_at=1_001)) is Build.COMPILED


def test_a_source_edited_after_the_build_is_stale(tmp_path: Path) -> None:
    assert build_of(_built(tmp_path, source_at=1_060, built_at=1_000)) is Build.STALE


def test_an_extension_without_its_source_runs_compiled(tmp_path: Path) -> None:
    built = tmp_path / EXTENSION  # a wheel may ship the extension alone
    built.write_bytes(b"")
    assert build_of(str(built)) is Build.COMPILED


def test_the_summary_names_stale_modules_and_how_to_rebuild() -> None:
    state = NativeState(
        {"gateway.limits.memory": Build.STALE, "gateway.limits.gcra": Build.COMPILED}
    )
    assert not state.is_compiled
    assert "gateway.limits.memory" in state.summary
    assert "pip install" in state.summary
    interpreted = NativeState({"gateway.limits.memory": Build.INTERPRETED})
    assert "running as Python" in interpreted.summary
    assert NativeState({"gateway.limits.memory": Build.COMPILED}).is_compiled


def test_ci_runs_the_compiled_stage(in_ci: bool) -> None:
    """What ships is compiled: CI's install must have compiled it, and nothing is stale."""
    state = native_state()
    assert not state.named(Build.STALE), state.summary
    if not in_ci and state.named(Build.INTERPRETED):
        pytest.skip(state.summary)
    assert state.is_compiled, state.summary


def test_the_same_source_passes_the_limits_tests_as_python(tmp_path: Path) -> None:
    """The pure-Python build (no C compiler at hand) runs the same source: the limits'
    unit tests pass on a copy of the tree with no extension modules in it."""
    if not native_state().named(Build.COMPILED):
        pytest.skip("nothing is compiled here: the whole suite already runs the source")
    shutil.copytree(ROOT / "gateway", tmp_path / "gateway", ignore=shutil.ignore_patterns("*.so"))
    shutil.copytree(ROOT / "tests", tmp_path / "tests", ignore=shutil.ignore_patterns("*.so"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    check = (
        "from gateway.limits.native import native_state, Build; state = native_state(); "
        "assert state.named(Build.INTERPRETED) == tuple(state.builds), state.summary"
    )
    run = subprocess.run(
        [sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    tests = [
        f"tests/unit/limits/{path.name}"
        for path in sorted((ROOT / "tests/unit/limits").glob("test_*.py"))
        if path.name != Path(__file__).name
    ]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
