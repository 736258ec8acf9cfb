"""Which version an unwatched policy folder is based on, and whether it holds an edit."""

from __future__ import annotations

import itertools

import pytest

from gateway.policy.folder_base import FolderBase, judge_folder

# marked, holds_marked, same, from_folder -> expected
CASES = [
    # The marker's version, unedited (a later identical version, a rollback, wins).
    (21, True, 21, None, FolderBase(21, is_edit=False)),
    (21, True, 23, 9, FolderBase(23, is_edit=False)),
    # Files of a newer version than the marker (written last): unedited.
    (20, False, 21, None, FolderBase(21, is_edit=False)),
    # Content equal to an older version than the marker: an edit (probe E, F1), judged
    # against that older version, so an API change in between is refused, not undone.
    (21, False, 20, None, FolderBase(20, is_edit=True)),
    (21, False, 20, 21, FolderBase(20, is_edit=True)),
    # Content equal to no version: an edit of the marker's version.
    (21, False, None, None, FolderBase(21, is_edit=True)),
    (21, False, None, 25, FolderBase(21, is_edit=True)),
    # No usable marker: content equal to a stored version is that version.
    (None, False, 20, None, FolderBase(20, is_edit=False)),
    (None, False, 20, 25, FolderBase(20, is_edit=False)),
    # No usable marker, no equal version: an edit of this folder's newest version.
    (None, False, None, 25, FolderBase(25, is_edit=True)),
    (None, False, None, None, FolderBase(None, is_edit=True)),
]


@pytest.mark.parametrize(("marked", "holds", "same", "from_folder", "expected"), CASES)
def test_judge_folder(
    marked: int | None, holds: bool, same: int | None, from_folder: int | None, expected: FolderBase
) -> None:
    """Each row of the start-up table."""
    judged = judge_folder(marked=marked, holds_marked=holds, same=same, from_folder=from_folder)
    assert judged == expected


@pytest.mark.parametrize(
    ("marked", "same", "from_folder"),
    list(itertools.product([None, 1, 20, 21, 22], [None, 1, 20, 21, 22], [None, 20, 25])),
)
def test_a_folder_differing_from_its_marker_is_an_edit(
    marked: int | None, same: int | None, from_folder: int | None
) -> None:
    """Content differing from the marker's version is an edit unless it is a newer version."""
    if marked is not None and same == marked:
        return  # content equal to the marker's version is `holds_marked`
    judged = judge_folder(marked=marked, holds_marked=False, same=same, from_folder=from_folder)
    if marked is not None:
        assert judged.is_edit == (same is None or same < marked)
    else:
        assert judged.is_edit == (same is None)
    # A folder not holding an edit is based on the version it holds.
    if not judged.is_edit:
        assert judged.version == same
