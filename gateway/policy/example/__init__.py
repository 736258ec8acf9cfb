"""The example policy bundle, shipped so `gateway serve` works in an empty folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def write_example(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for entry in resources.files(__package__).iterdir():
        if entry.name.endswith(".yaml"):
            (directory / entry.name).write_text(entry.read_text(encoding="utf-8"), encoding="utf-8")
