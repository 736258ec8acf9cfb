"""A bundle as text: canonical JSON, a stable YAML rendering, diffs, export files, the marker.

Pure functions over plain values; no I/O except `read_marker`, `folder_hash`,
`write_export` and `write_files`, which touch only the folder they are given.

The marker (`.policy-version`) records which version an exported folder came
from, so `apply` can tell an edit of the running version from an edit of an
older one, and the hash of the files it was written with, so `export` can tell
an unapplied edit. It is not YAML-suffixed, so the loader never reads it as policy.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from gateway.policy.compiled import bundle_hash
from gateway.policy.errors import PolicyInvalid, PolicyIssue
from gateway.policy.loader import NAMED_SECTIONS, load_bundle, policy_files

log = logging.getLogger(__name__)

MARKER_NAME = ".policy-version"
# An empty bundle is written as one file holding an empty mapping: a folder with no
# policy file is no policy at all (the loader refuses it), so it could not be checked or
# applied back, and a watched folder rewritten to it would be stuck invalid.
EMPTY_BUNDLE_FILE = "policy.yaml"
_EMPTY_BUNDLE_TEXT = (
    "# This policy version is an empty bundle: it has no sections. The file is kept so\n"
    "# that the folder still holds a policy (a folder with no *.yaml file is refused).\n"
    "{}\n"
)
SECTION_ORDER = ("providers", "models", "routing", "teams", "guardrails", "auth", "timezone")
_MARKER_HEADER = (
    "# Written by `gateway policy export` and `apply`: the policy version these files\n"
    "# are based on. `gateway policy apply` refuses the folder when the running\n"
    "# version holds an admin-API change or a rollback these files have not seen.\n"
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
    """The folder's marker; None when it has none, or one that is not a marker (warned of)."""
    path = directory / MARKER_NAME
    try:
        content = path.read_bytes()
    except OSError:
        return None  # none (the usual case before an export), or unreadable
    try:
        marker = parse_marker(content.decode("utf-8"))
    except UnicodeDecodeError:
        marker = None
    if marker is None:
        _warn_malformed_marker(path, content)
    return marker


# (path, sha256 of content) already warned of: the folder watcher reads the marker every
# poll, so a malformed one is named once per distinct content, not once a second.
_WARNED_MARKERS: set[tuple[str, str]] = set()
_MAX_WARNED_MARKERS = 256  # a bound on the memory, not a limit anyone meets


def _warn_malformed_marker(path: Path, content: bytes) -> None:
    seen = (str(path), hashlib.sha256(content).hexdigest())
    if seen in _WARNED_MARKERS:
        return
    if len(_WARNED_MARKERS) >= _MAX_WARNED_MARKERS:
        _WARNED_MARKERS.clear()
    _WARNED_MARKERS.add(seen)
    log.warning(
        "%s is not a policy version marker (expected `version: N` and `hash: ...`, as "
        "`gateway policy export` and `apply` write them): it is read as no marker, so "
        "apply cannot tell which version the folder is based on; delete it, or export "
        "the running version to write a valid one",
        path,
    )


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


def write_export(
    directory: Path,
    files: Mapping[str, str],
    marker: Marker,
    *,
    force: bool,
    based_on: dict[str, Any] | None = None,
) -> None:
    """Replace the folder's policy files with `files` (name → text, as
    `folder_limits.export_files` makes them) and the marker.

    A folder holding policy files but no marker was not made by export, and one
    whose files no longer have the hash its marker recorded holds edits no
    version has: either is replaced only with `force`, so an export never
    silently deletes hand-written files. `based_on`, the bundle of the version the
    marker names, tells which files hold the edits. Raises FileExistsError (those
    cases) or OSError.
    """
    directory.mkdir(parents=True, exist_ok=True)
    existing = policy_files(directory)
    if existing and not force:
        _refuse_hand_written(directory, existing, based_on)
    # New files first, each replacing its old one whole, and only then the files no
    # longer needed: `serve --policies` watching this folder never reads it with files
    # missing or half-written (a folder missing a file could even be a valid policy).
    stale = dict.fromkeys(p.name for p in existing if p.name not in files)
    write_files(directory, {**files, **stale}, marker)


def _refuse_hand_written(
    directory: Path, existing: list[Path], based_on: dict[str, Any] | None
) -> None:
    files = ", ".join(p.name for p in existing)
    based = read_marker(directory)
    if based is None:
        raise FileExistsError(
            f"{directory} already holds policy files ({files}) "
            "that no export wrote; export into an empty folder, or pass --force to replace them"
        )
    if folder_hash(directory) != based.hash:
        edited = (edited_files(directory, based_on) if based_on is not None else None) or files
        raise FileExistsError(
            f"{directory} has changed since policy version {based.version} was exported or "
            f"applied there (edited: {edited}), and an export would delete those edits. "
            f"Preview them with `gateway policy diff {directory}` and apply them with "
            f"`gateway policy apply {directory}`, export into another folder, "
            "or pass --force to replace them"
        )


FileOf = Callable[[tuple[str, ...]], "str | None"]


def edited_files(directory: Path, base: dict[str, Any]) -> str:
    """The folder's files whose part differs from `base` (comma-separated names): those
    that do not load, else those whose sections or entries are not `base`'s."""
    try:
        loaded = load_bundle(directory)
    except PolicyInvalid as invalid:
        broken = (Path(issue.location.rsplit(":", 1)[0]).name for issue in invalid.issues)
        return ", ".join(sorted(set(broken)))
    prefix = f"{directory}/"

    def file_of(path: tuple[str, ...]) -> str | None:
        mark = loaded.locate(path)
        return mark.rsplit(":", 1)[0].removeprefix(prefix) if mark.startswith(prefix) else None

    now = canonical(loaded.raw, str(directory))
    return ", ".join(sorted(files_to_rewrite(base, now, file_of)))


def place_sections(raw: dict[str, Any], file_of: FileOf) -> dict[str, dict[str, Any]]:
    """The bundle split into files: each section (each entry, in named sections) goes to
    the file `file_of` names for it, else to `<section>.yaml`."""
    files: dict[str, dict[str, Any]] = {}
    for section, value in raw.items():
        if section in NAMED_SECTIONS and isinstance(value, dict) and value:
            for name, entry in value.items():
                file = file_of((section, name)) or f"{section}.yaml"
                files.setdefault(file, {}).setdefault(section, {})[name] = entry
        else:
            files.setdefault(file_of((section,)) or f"{section}.yaml", {})[section] = value
    return files


def holding_something(files: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`files`, or for an empty bundle EMPTY_BUNDLE_FILE holding an empty mapping."""
    return files or {EMPTY_BUNDLE_FILE: {}}


def files_to_rewrite(
    old: dict[str, Any], new: dict[str, Any], file_of: FileOf
) -> dict[str, str | None]:
    """What turns a folder holding `old` into one holding `new`, touching only the files
    whose part changed (the others keep their comments): file name → text, None to delete.

    `file_of` says where each section or entry of `old` is written today.
    """
    before = holding_something(place_sections(old, file_of))
    after = holding_something(place_sections(new, file_of))
    return plan_of(before, after)


def plan_of(
    before: Mapping[str, dict[str, Any]], after: Mapping[str, dict[str, Any]]
) -> dict[str, str | None]:
    """The files that differ: written first, then deleted (so a reader of the folder
    never sees it without a policy file)."""
    changed = [
        n
        for n in dict.fromkeys([*before, *after])
        if _written(before.get(n)) != _written(after.get(n))
    ]
    written = {name: dump_file(after[name]) for name in changed if name in after}
    return {**written, **{name: None for name in changed if name not in after}}


def _written(part: Any) -> str:
    """A file's part as its text tells it: `100` and `100.0`, `1` and `true` are equal to
    Python but not to the version's hash, and a file left as it was then read as an edit of
    its own and undid the version (probe p21)."""
    return json.dumps(part, default=str)


def dump_file(sections: dict[str, Any]) -> str:
    """One policy file's text, keys in the order they were written (an empty mapping, with
    a comment saying why the file is there, for an empty bundle)."""
    if not sections:
        return _EMPTY_BUNDLE_TEXT
    return yaml.safe_dump(sections, sort_keys=False, default_flow_style=False, allow_unicode=True)


def write_files(directory: Path, rewrite: dict[str, str | None], marker: Marker) -> None:
    """Apply `files_to_rewrite`'s plan in its order, each file replaced whole (never seen
    half-written), the marker last. Raises OSError (a read-only folder, such as a ConfigMap)."""
    for name, text in rewrite.items():
        path = directory / name
        if text is None:
            path.unlink(missing_ok=True)
            continue
        temporary = directory / f".{name}.tmp"
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    (directory / MARKER_NAME).write_text(render_marker(marker), encoding="utf-8")
