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
"""

from __future__ import annotations

from dataclasses import dataclass


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
) -> FolderBase:
    """Judge a folder nobody here has watched yet.

    `marked`: the version its marker names, if this database holds it (None: no
    marker, or another database's); `holds_marked`: its content equals that
    version's; `same`: the newest stored version with its content (None: none);
    `from_folder`: the newest version made from this folder (None: none).
    """
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
        # No usable marker (a ConfigMap, a copy, another database's export): content equal
        # to a stored version is that version, unedited.
        return FolderBase(same, is_edit=False)
    return FolderBase(from_folder, is_edit=True)
