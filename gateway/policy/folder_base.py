"""Which version a policy folder is based on, and whether it holds an edit; pure, no I/O.

Used when nothing in this process has watched the folder yet (a start, `policy
apply DIR`): the folder's marker, its content and the history say what it has
seen. The marker (`.policy-version`, written last, after the files) names the
version the folder last held; a folder whose content differs from that version
holds an edit, even when the content equals an older version: an edit made
while the gateway was stopped (a team removed, an `undo` in the editor) is
applied, never overwritten with the version it reverted.

Content equal to a stored version still decides the base the edit is judged
against, so SPEC §4's apply rule keeps refusing what it refused: a folder whose
files equal version 20 under a marker of 21 may be an old copy put back by
mistake, and if 21 (or later) holds an admin-API change or a rollback that 20
lacks, only the operator can tell, so it is refused, not applied.

A folder with no usable marker (a ConfigMap or a `:ro` mount can hold none; a copy)
has the version last made from it (bootstrap or folder apply, read from the audit
log) in the marker's place: a ConfigMap set back to older content (`helm rollback`,
a git revert) is an edit, as the same revert under a running gateway is.

An edit that has taken in every change made since its base (`takes_in`: the running
version exported and the edits merged into it, with or without the marker) undoes
none of them: it is based on the running version.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import orjson


@dataclass(frozen=True, slots=True)
class FolderBase:
    """The version a folder is judged against (None: unknown) and whether it holds an edit."""

    version: int | None
    is_edit: bool


def judge_folder(
    *,
    marked: int | None,
    holds_marked: bool,
    same: int | None,
    from_folder: int | None,
    holds_from_folder: bool = False,
) -> FolderBase:
    """Judge a folder nobody here has watched yet.

    `marked`: the version its marker names, if this database holds it (None: no
    marker, or another database's); `holds_marked`: its content equals that
    version's; `same`: the newest stored version with its content (None: none);
    `from_folder`: the newest version made from this folder (None: none);
    `holds_from_folder`: its content equals that version's.
    """
    if marked is None and from_folder is not None:
        # No usable marker: the version last made from this folder stands in for one.
        marked, holds_marked = from_folder, holds_from_folder
    if marked is not None:
        if holds_marked:
            # A later version with the same content (a rollback) is what it holds now.
            return FolderBase(max(marked, same or marked), is_edit=False)
        if same is not None and same > marked:
            # Files of a newer version than the marker: the marker, written last, lagged
            # (a crash between the two, a read-only marker) or the files were copied from
            # a newer export. They are that version, unedited.
            return FolderBase(same, is_edit=False)
        # It has seen `marked` and differs from it: an edit, even if it equals an older
        # version. Judged against the version its content equals, if any (see above).
        return FolderBase(same if same is not None else marked, is_edit=True)
    if same is not None:
        # Never seen here (a new folder, another database's export): content equal to a
        # stored version is that version, unedited.
        return FolderBase(same, is_edit=False)
    return FolderBase(None, is_edit=True)


_ABSENT: Final = object()  # a key one bundle lacks


def changed_paths(old: Any, new: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Where two bundles differ: down each mapping to the first key whose value differs
    (a list or a scalar is compared whole; a key one side lacks is a difference)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            yield from changed_paths(old.get(key, _ABSENT), new.get(key, _ABSENT), (*path, key))
    elif not _same(old, new):
        yield path


def _value_at(bundle: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(bundle, dict) or key not in bundle:
            return _ABSENT
        bundle = bundle[key]
    return bundle


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON (`true` is not `1`, `1` is not `1.0`)."""
    if a is _ABSENT or b is _ABSENT:
        return a is b
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        b, option=orjson.OPT_SORT_KEYS
    )


def takes_in(folder: dict[str, Any], base: dict[str, Any], running: dict[str, Any]) -> bool:
    """Does `folder`, an edit of `base`, hold every change `running` made since `base`
    (running's value wherever running differs from base)? Then applying it undoes none
    of them. An edit of something running changed too is not taken in: only the
    operator can tell whether it builds on that change or overwrites it."""
    return all(
        _same(_value_at(folder, path), _value_at(running, path))
        for path in changed_paths(base, running)
    )
