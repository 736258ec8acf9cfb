"""What a change does (gateway/policy/changes.py): merge patches and the audit's before/after."""

import pytest

from gateway.policy.changes import changed_parts, merge_patch, patch_team


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # RFC 7386 appendix A, in part
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch(target, patch, result) -> None:
    assert merge_patch(target, patch) == result


def test_merge_patch_never_changes_its_inputs() -> None:
    target = {"a": {"b": [1]}}
    merge_patch(target, {"a": {"b": [2], "c": 1}})
    assert target == {"a": {"b": [1]}}


def test_patch_team_touches_one_team() -> None:
    bundle = {"teams": {"a": {"models": ["x"], "limits": {"rpm": 1}}, "b": {"models": []}}}
    patched = patch_team(bundle, "a", {"limits": {"tpm": 5}})
    assert patched["teams"] == {
        "a": {"models": ["x"], "limits": {"rpm": 1, "tpm": 5}},
        "b": {"models": []},
    }
    assert bundle["teams"]["a"]["limits"] == {"rpm": 1}


def test_changed_parts_name_entries_of_named_sections() -> None:
    old = {"teams": {"a": {"models": ["x"]}, "b": {}}, "routing": {"retries": 1}, "timezone": "UTC"}
    new = {"teams": {"a": {"models": ["y"]}, "c": {}}, "routing": {"retries": 1}}
    before, after = changed_parts(old, new)
    assert before == {"teams": {"a": {"models": ["x"]}, "b": {}}, "timezone": "UTC"}
    assert after == {"teams": {"a": {"models": ["y"]}, "c": {}}}


def test_changed_parts_of_equal_or_new_bundles() -> None:
    assert changed_parts({"teams": {}}, {"teams": {}}) == ({}, {})
    assert changed_parts(None, {"routing": {"retries": 2}}) == ({}, {"routing": {"retries": 2}})
