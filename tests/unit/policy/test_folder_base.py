"""Which version an unwatched policy folder is based on, and whether it holds an edit."""

from __future__ import annotations

import itertools

import pytest

from gateway.policy.folder_base import FolderBase, judge_folder

# marked, holds_marked, same, from_folder, holds_from_folder -> expected
CASES = [
    # The marker's version, unedited (a later identical version, a rollback, wins).
    (21, True, 21, None, False, FolderBase(21, is_edit=False)),
    (21, True, 23, 9, False, FolderBase(23, is_edit=False)),
    # Files of a newer version than the marker (written last): unedited.
    (20, False, 21, None, False, FolderBase(21, is_edit=False)),
    # Content equal to an older version than the marker: an edit (probe E, F1), judged
    # against that older version, so an API change in between is refused, not undone.
    (21, False, 20, None, False, FolderBase(20, is_edit=True)),
    (21, False, 20, 21, False, FolderBase(20, is_edit=True)),
    # Content equal to no version: an edit of the marker's version.
    (21, False, None, None, False, FolderBase(21, is_edit=True)),
    (21, False, None, 25, False, FolderBase(21, is_edit=True)),
    # No usable marker, never made from this folder: content equal to a stored version
    # is that version; else an edit of nothing known.
    (None, False, 20, None, False, FolderBase(20, is_edit=False)),
    (None, False, None, None, False, FolderBase(None, is_edit=True)),
    # No usable marker (a ConfigMap): the version last made from the folder stands in.
    # Its content, unedited (a later identical version wins).
    (None, False, 25, 25, True, FolderBase(25, is_edit=False)),
    (None, False, 27, 25, True, FolderBase(27, is_edit=False)),
    # Set back to an older version (helm rollback, probe p7): an edit, judged against it.
    (None, False, 20, 25, False, FolderBase(20, is_edit=True)),
    # A newer version's content (exported from the running version): that version.
    (None, False, 26, 25, False, FolderBase(26, is_edit=False)),
    # Content equal to no version: an edit of the folder's newest version.
    (None, False, None, 25, False, FolderBase(25, is_edit=True)),
]


@pytest.mark.parametrize(
    ("marked", "holds", "same", "from_folder", "holds_from_folder", "expected"), CASES
)
def test_judge_folder(
    marked: int | None,
    holds: bool,
    same: int | None,
    from_folder: int | None,
    holds_from_folder: bool,
    expected: FolderBase,
) -> None:
    """Each row of the start-up table."""
    judged = judge_folder(
        marked=marked,
        holds_marked=holds,
        same=same,
        from_folder=from_folder,
        holds_from_folder=holds_from_folder,
    )
    assert judged == expected


@pytest.mark.parametrize(
    ("marked", "same", "from_folder"),
    list(itertools.product([None, 1, 20, 21, 22], [None, 1, 20, 21, 22], [None, 20, 25])),
)
def test_a_folder_differing_from_its_marker_is_an_edit(
    marked: int | None, same: int | None, from_folder: int | None
) -> None:
    """Content differing from the marker's version (or, with none, from the version last
    made from the folder) is an edit unless it is a newer version."""
    seen = marked if marked is not None else from_folder
    if seen is not None and same == seen:
        return  # content equal to the version seen is `holds_*`
    judged = judge_folder(marked=marked, holds_marked=False, same=same, from_folder=from_folder)
    if seen is not None:
        assert judged.is_edit == (same is None or same < seen)
    else:
        assert judged.is_edit == (same is None)
    # A folder not holding an edit is based on the version it holds.
    if not judged.is_edit:
        assert judged.version == same
