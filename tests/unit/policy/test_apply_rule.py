"""apply_rule: which API edit or rollback a version holds, and when a folder has not seen it."""

from __future__ import annotations

from gateway.policy.apply_rule import (
    PolicyAction,
    VersionOrigin,
    held_change,
    is_unseen,
)

HISTORY = [
    VersionOrigin(1, PolicyAction.BOOTSTRAP),
    VersionOrigin(2, PolicyAction.APPLY_FILES, None, has_held=True),  # a fresh folder
    VersionOrigin(3, PolicyAction.PATCH_TEAM),
    VersionOrigin(4, PolicyAction.APPLY_FILES, 3, has_held=True),  # exported at 3, edited
    VersionOrigin(5, PolicyAction.APPLY_FILES, None, has_held=True),  # forced, based on 2
    VersionOrigin(6, PolicyAction.ROLLBACK),
    VersionOrigin(7, PolicyAction.APPLY_FILES),  # written before the rule: says nothing
]


def test_what_each_version_holds() -> None:
    assert [held_change(HISTORY, v) for v in range(1, 8)] == [None, None, 3, 3, None, 6, 6]
    assert held_change(HISTORY, None) is None
    assert held_change(HISTORY, 99) == 99  # unknown history: the safe side


def test_a_folder_conflicts_only_with_a_change_newer_than_its_base() -> None:
    assert not is_unseen(None, None)  # nothing held: any folder goes through
    assert is_unseen(3, None)  # unknown base: has seen nothing
    assert is_unseen(3, 2) and not is_unseen(3, 3) and not is_unseen(3, 4)
