"""`takes_in`: has a folder's edit taken in every change the running version made since
the folder's base (the running version exported, the edits merged into it)?"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.folder_base import changed_paths, takes_in

BASE: dict[str, Any] = {
    "teams": {
        "search": {"models": ["gpt-4o"], "limits": {"rpm": 60}},
        "ml": {"models": ["*"]},
    },
    "models": {"gpt-4o": {"deployments": [{"provider": "openai", "model": "gpt-4o"}]}},
}


def _with(bundle: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(bundle)
    node = changed
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return changed


def _without(bundle: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    changed = copy.deepcopy(bundle)
    node = changed
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return changed


def test_the_exported_running_version_with_an_edit_merged_in_takes_it_in() -> None:
    """Probe p7: the admin API set rpm; the operator exported that, added a team, and put
    it into the ConfigMap (no marker)."""
    running = _with(BASE, ("teams", "search", "limits", "rpm"), 90)
    merged = _with(running, ("teams", "new", "models"), ["gpt-4o"])
    assert takes_in(merged, BASE, running)


def test_an_edit_of_the_old_base_does_not_take_in_the_change() -> None:
    running = _with(BASE, ("teams", "search", "limits", "rpm"), 90)
    stale_edit = _with(BASE, ("teams", "new", "models"), ["gpt-4o"])
    assert not takes_in(stale_edit, BASE, running)


def test_a_team_the_running_version_removed_must_be_gone_from_the_folder() -> None:
    running = _without(BASE, ("teams", "ml"))
    assert not takes_in(_with(BASE, ("teams", "x"), {"models": []}), BASE, running)
    assert takes_in(_with(running, ("teams", "x"), {"models": []}), BASE, running)


def test_a_team_the_running_version_added_must_be_there_whole() -> None:
    running = _with(BASE, ("teams", "added"), {"models": ["gpt-4o"], "limits": {"rpm": 5}})
    edited_too = _with(running, ("teams", "added", "limits", "rpm"), 6)
    assert takes_in(running, BASE, running)
    # Changed again in the folder: only the operator knows whether that builds on it.
    assert not takes_in(edited_too, BASE, running)


def test_values_equal_as_json_only() -> None:
    """`true` is not `1`: a bundle's hash tells them apart, so must this."""
    running = _with(BASE, ("teams", "search", "limits", "rpm"), 1)
    assert not takes_in(_with(BASE, ("teams", "search", "limits", "rpm"), True), BASE, running)
    assert not takes_in(_with(BASE, ("teams", "search", "limits", "rpm"), 1.0), BASE, running)


def test_nothing_changed_since_the_base_is_always_taken_in() -> None:
    assert takes_in({}, BASE, BASE)
    assert list(changed_paths(BASE, copy.deepcopy(BASE))) == []


# Small nested bundles: mappings of a few keys down to scalars and lists.
_leaf = st.one_of(
    st.integers(-3, 3), st.booleans(), st.sampled_from(["a", "b"]), st.lists(st.integers(0, 2))
)
_bundle = st.recursive(
    _leaf,
    lambda inner: st.dictionaries(st.sampled_from(list("pqrs")), inner, max_size=3),
    max_leaves=8,
).filter(lambda value: isinstance(value, dict))


@given(base=_bundle, running=_bundle, folder=_bundle)
def test_taking_in_means_running_agrees_wherever_it_changed(
    base: dict[str, Any], running: dict[str, Any], folder: dict[str, Any]
) -> None:
    """Taken in exactly when, at every path where running differs from base, the folder
    holds running's value: what applying the folder would keep of running's changes."""
    changed = list(changed_paths(base, running))

    def at(bundle: Any, path: tuple[str, ...]) -> Any:
        for key in path:
            if not isinstance(bundle, dict) or key not in bundle:
                return "<absent>"
            bundle = bundle[key]
        return ("value", repr(type(bundle)), bundle)

    expected = all(at(folder, path) == at(running, path) for path in changed)
    assert takes_in(folder, base, running) == expected


@given(base=_bundle, running=_bundle)
def test_the_running_version_itself_takes_in_everything(
    base: dict[str, Any], running: dict[str, Any]
) -> None:
    assert takes_in(running, base, running)
    # and the base itself takes in nothing but no change
    assert takes_in(base, base, running) == (list(changed_paths(base, running)) == [])
