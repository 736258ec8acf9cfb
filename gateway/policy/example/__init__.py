"""The example policy bundle, shipped so `gateway serve` works in an empty folder, with
the bundle's JSON Schema beside it for editors (as in the repository's `policies/`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def write_example(directory: Path) -> None:
    from gateway.policy.json_schema import SCHEMA_FILE_NAME, render_json_schema

    directory.mkdir(parents=True, exist_ok=True)
    for entry in resources.files(__package__).iterdir():
        if entry.name.endswith(".yaml"):
            (directory / entry.name).write_text(entry.read_text(encoding="utf-8"), encoding="utf-8")
    (directory / SCHEMA_FILE_NAME).write_text(render_json_schema(), encoding="utf-8")
