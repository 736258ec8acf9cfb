"""A bundle as text: canonical JSON, a stable YAML rendering, diffs, export files, the marker.

Pure functions over plain values; no I/O except `read_marker`, `folder_hash`
and `write_export`, which touch only the folder they are given.

The marker (`.policy-version`) records which version an exported folder came
from, so `apply` can tell an edit of the running version from an edit of an
older one, and the hash of the files it was written with, so `export` can tell
an unapplied edit. It is not YAML-suffixed, so the loader never reads it as policy.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from gateway.policy.compiled import bundle_hash
from gateway.policy.errors import PolicyInvalid, PolicyIssue
from gateway.policy.loader import load_bundle, policy_files

MARKER_NAME = ".policy-version"
SECTION_ORDER = ("providers", "models", "routing", "teams", "guardrails", "auth", "timezone")
_MARKER_HEADER = (
    "# Written by `gateway policy export` and `apply`: the policy version these files\n"
    "# are based on. `gateway policy apply` refuses the folder once the running\n"
    "# version has moved past it (someone changed the policy since).\n"
)


def canonical(raw: dict[str, Any], where: str = "bundle") -> dict[str, Any]:
    """The bundle as plain JSON values (what the database stores and hashes)."""
    try:
        value = orjson.loads(orjson.dumps(raw))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise PolicyInvalid([PolicyIssue(where, "", f"not representable as JSON: {exc}")]) from None
    if not isinstance(value, dict):
        raise PolicyInvalid([PolicyIssue(where, "", "a bundle must be a mapping of sections")])
    return value


def render_yaml(raw: dict[str, Any] | None) -> str:
    """Sorted keys, block style: equal bundles render to equal text, whatever their order."""
    if not raw:
        return ""
    return yaml.safe_dump(raw, sort_keys=True, default_flow_style=False, allow_unicode=True)


def unified_diff(
    old: dict[str, Any] | None, new: dict[str, Any] | None, old_label: str, new_label: str
) -> str:
    """A unified diff of the two bundles' stable renderings; "" when they are equal."""
    lines = difflib.unified_diff(
        render_yaml(old).splitlines(keepends=True),
        render_yaml(new).splitlines(keepends=True),
        fromfile=old_label,
        tofile=new_label,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def section_files(raw: dict[str, Any]) -> dict[str, str]:
    """One YAML file per section (`teams.yaml`, …), keys in the order they were written."""
    names = [s for s in SECTION_ORDER if s in raw] + [s for s in raw if s not in SECTION_ORDER]
    return {
        f"{name}.yaml": yaml.safe_dump(
            {name: raw[name]}, sort_keys=False, default_flow_style=False, allow_unicode=True
        )
        for name in names
    }


@dataclass(frozen=True, slots=True)
class Marker:
    version: int
    hash: str


def render_marker(marker: Marker) -> str:
    return f"{_MARKER_HEADER}version: {marker.version}\nhash: {marker.hash}\n"


def parse_marker(text: str) -> Marker | None:
    """The marker's version and hash; None when the text is not a marker."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(value, dict):
        return None
    version, digest = value.get("version"), value.get("hash")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return None
    return Marker(version, digest if isinstance(digest, str) else "")


def read_marker(directory: Path) -> Marker | None:
    try:
        return parse_marker((directory / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


def write_marker(directory: Path, marker: Marker) -> bool:
    """Record the folder's base version; False when the folder is read-only (a ConfigMap)."""
    try:
        (directory / MARKER_NAME).write_text(render_marker(marker), encoding="utf-8")
    except OSError:
        return False
    return True


def folder_hash(directory: Path) -> str | None:
    """The hash the folder's files have as a bundle (as `apply` computes it); None if invalid."""
    try:
        return bundle_hash(canonical(load_bundle(directory).raw, str(directory)))
    except PolicyInvalid:
        return None


def write_export(directory: Path, raw: dict[str, Any], marker: Marker, *, force: bool) -> None:
    """Replace the folder's policy files with the bundle's sections and the marker.

    A folder holding policy files but no marker was not made by export, and one
    whose files no longer have the hash its marker recorded holds edits no
    version has: either is replaced only with `force`, so an export never
    silently deletes hand-written files. Raises FileExistsError (those cases) or OSError.
    """
    directory.mkdir(parents=True, exist_ok=True)
    existing = policy_files(directory)
    if existing and not force:
        _refuse_hand_written(directory, existing)
    for path in existing:
        path.unlink()
    for name, text in section_files(raw).items():
        (directory / name).write_text(text, encoding="utf-8")
    (directory / MARKER_NAME).write_text(render_marker(marker), encoding="utf-8")


def _refuse_hand_written(directory: Path, existing: list[Path]) -> None:
    files = ", ".join(p.name for p in existing)
    based = read_marker(directory)
    if based is None:
        raise FileExistsError(
            f"{directory} already holds policy files ({files}) "
            "that no export wrote; export into an empty folder, or pass --force to replace them"
        )
    if folder_hash(directory) != based.hash:
        raise FileExistsError(
            f"{directory} has changed since policy version {based.version} was exported or "
            f"applied there ({files}), and an export would delete those edits. Preview them "
            f"with `gateway policy diff {directory}` and apply them with "
            f"`gateway policy apply {directory}`, export into another folder, "
            "or pass --force to replace them"
        )
