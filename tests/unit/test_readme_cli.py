"""README's Quickstart and its *Running it* table say what the CLI really takes: every
command and every option `--help` lists is in the row that documents that command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from gateway.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"
OPTION = re.compile(r"(?<![\w-])--?[a-z][a-z-]*")


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _documented() -> dict[tuple[str, ...], set[str]]:
    """Each command the table names (`("policy", "export")`) and the options its entry shows."""
    found: dict[tuple[str, ...], set[str]] = {}
    groups = {"policy", "clients", "keys", "report", "cache"}
    for line in _section("Running it").splitlines():
        if not line.startswith("| `gateway "):
            continue
        first_cell = line.split(" | ")[0]
        group: str | None = None
        for entry in re.findall(r"`([^`]*)`", first_cell):
            words = entry.split()
            if words[0] == "gateway":
                words = words[1:]
                group = words[0] if words[0] in groups else None
            if group is not None and words[0] == group:
                words = words[1:]
            name = (group, words[0]) if group else (words[0],)
            found.setdefault(tuple(n for n in name if n), set()).update(OPTION.findall(entry))
    return found


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    children = getattr(command, "commands", None)
    if not children:
        return [(path, command)]
    return [leaf for name, child in children.items() for leaf in _commands(child, (*path, name))]


LEAVES = _commands(typer.main.get_command(app))


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_option_of_a_command_is_in_its_readme_entry(
    path: tuple[str, ...], command: Any
) -> None:
    """`gateway PATH --help`'s options all appear in the README entry for `gateway PATH`."""
    documented = _documented()
    assert path in documented, f"README's Running it table lacks `gateway {' '.join(path)}`"
    for param in command.params:
        names = [name for name in param.opts if name.startswith("-") and name != "--help"]
        if names:
            assert set(names) & documented[path], (
                f"README's entry for `gateway {' '.join(path)}` lacks {names[0]}"
            )


def test_the_quickstart_says_installing_compiles_and_what_that_needs() -> None:
    """`pip install -e .` builds the limits stage with mypyc: Quickstart says it needs a C
    compiler and Python's headers, and how to install without them."""
    quickstart = _section("Quickstart")
    assert "C compiler" in quickstart and "headers" in quickstart
    assert "HATCH_BUILD_NO_HOOKS=true" in quickstart
