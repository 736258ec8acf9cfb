"""Is the limits stage running compiled? Its hot modules are compiled with mypyc (C
made from the same typed source) when the wheel is built, editable installs included
(pyproject.toml, `[tool.hatch.build.targets.wheel.hooks.mypyc]`): every request of a
limited team runs them, and compiled they cost ~10 µs less per request under load
(bench/RESULTS.md, 1ebd94b).

Python imports a module's compiled form before its source, so a source edited after
the build would run stale: `native_state` finds those, and the server logs them at
start (tests refuse to run with them). Not compiled itself: it must work either way.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from enum import StrEnum

# The same modules as the build hook's `include` (a test holds the two lists equal).
COMPILED_MODULES = (
    "gateway.limits.answers",
    "gateway.limits.backend",
    "gateway.limits.budget",
    "gateway.limits.estimate",
    "gateway.limits.gcra",
    "gateway.limits.memory",
    "gateway.limits.periods",
    "gateway.limits.plan",
    "gateway.limits.service",
    "gateway.limits.stage",
    "gateway.limits.token_count",
    "gateway.usage.nano",  # the estimate's rounding
)
# A source this much newer than its build is an edit (an install writes both within it).
SLACK_S = 2.0
# How to build them again after editing one (the README's developer setup).
REBUILD_COMMAND = '.venv/bin/pip install --no-deps -e ".[dev]"'


class Build(StrEnum):
    COMPILED = "compiled"  # running as built by mypyc
    INTERPRETED = "interpreted"  # running from its source (a pure-Python build)
    STALE = "stale"  # compiled, but its source changed since: the old code runs


def build_of(path: str) -> Build:
    """How the module loaded from `path` (its `__file__`) runs."""
    if path.endswith(".py"):
        return Build.INTERPRETED
    folder, name = os.path.split(path)  # memory.cpython-311-x86_64-linux-gnu.so
    source = os.path.join(folder, name.split(".", 1)[0] + ".py")
    if os.path.exists(source) and os.path.getmtime(source) > os.path.getmtime(path) + SLACK_S:
        return Build.STALE
    return Build.COMPILED


@dataclass(frozen=True, slots=True)
class NativeState:
    builds: dict[str, Build]  # by module name

    def named(self, build: Build) -> tuple[str, ...]:
        return tuple(name for name, b in self.builds.items() if b is build)

    @property
    def is_compiled(self) -> bool:
        return all(b is Build.COMPILED for b in self.builds.values())

    @property
    def summary(self) -> str:
        stale = self.named(Build.STALE)
        if stale:
            return (
                f"limits stage: {len(stale)} compiled module(s) older than their source "
                f"({', '.join(stale)}): the old code runs; rebuild with {REBUILD_COMMAND}"
            )
        interpreted = self.named(Build.INTERPRETED)
        if not interpreted:
            return f"limits stage: compiled (mypyc, {len(self.builds)} modules)"
        return (
            f"limits stage: running as Python ({len(interpreted)} of {len(self.builds)} "
            "modules not compiled): correct, but it costs more CPU per request; install "
            "from a wheel built with its build hook (a C compiler at hand) to compile it"
        )


def native_state() -> NativeState:
    return NativeState(
        {name: build_of(importlib.import_module(name).__file__ or "") for name in COMPILED_MODULES}
    )
