"""Bundles as text (gateway/policy/bundle_text.py): stable rendering, diffs, export files, marker."""

import threading
from pathlib import Path

import pytest

from gateway.policy.bundle_text import (
    MARKER_NAME,
    Marker,
    canonical,
    parse_marker,
    plan_of,
    read_marker,
    render_marker,
    render_yaml,
    unified_diff,
    write_export,
)
from gateway.policy.compiled import bundle_hash
from gateway.policy.errors import PolicyInvalid
from gateway.policy.folder_limits import export_files
from gateway.policy.loader import load_bundle

BUNDLE = {
    "teams": {"search": {"models": ["small", "*"]}, "demo": {"models": ["*"]}},
    "providers": {"demo": {"type": "mock"}, "up": {"type": "openai", "api_key": "${KEY}"}},
    "models": {"small": {"deployments": [{"provider": "demo", "model": "m", "weight": 2.5}]}},
    "routing": {"timeout_s": 30},
    "timezone": "Europe/Paris",
    "auth": {"issuers": []},
}


def test_rendering_ignores_key_order() -> None:
    reordered = {key: BUNDLE[key] for key in reversed(list(BUNDLE))}
    assert render_yaml(reordered) == render_yaml(BUNDLE)
    assert render_yaml(None) == render_yaml({}) == ""


def test_equal_bundles_have_no_diff_and_a_change_is_one_hunk() -> None:
    assert unified_diff(BUNDLE, dict(BUNDLE), "a", "b") == ""
    changed = {**BUNDLE, "routing": {"timeout_s": 45}}
    diff = unified_diff(BUNDLE, changed, "version 1", "version 2")
    assert diff.splitlines()[:2] == ["--- version 1", "+++ version 2"]
    assert "-  timeout_s: 30\n+  timeout_s: 45\n" in diff


def test_a_diff_from_nothing_adds_every_line() -> None:
    diff = unified_diff(None, BUNDLE, "no version", "dir")
    assert all(not line.startswith("-") for line in diff.splitlines()[2:])


def test_export_files_load_back_to_the_same_bundle_and_hash(tmp_path: Path) -> None:
    """One file per section; loading them gives the bundle back, references unresolved."""
    files = export_files(BUNDLE)
    assert list(files) == [
        "providers.yaml",
        "models.yaml",
        "routing.yaml",
        "teams.yaml",
        "auth.yaml",
        "timezone.yaml",
    ]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    loaded = load_bundle(tmp_path)
    assert loaded.raw == BUNDLE
    assert bundle_hash(loaded.raw) == bundle_hash(BUNDLE)


def test_export_keeps_the_order_sections_were_written_in() -> None:
    assert export_files(BUNDLE)["teams.yaml"].index("search") < (
        export_files(BUNDLE)["teams.yaml"].index("demo")
    )


def test_marker_round_trips_and_garbage_is_no_marker() -> None:
    marker = Marker(7, "abc")
    assert parse_marker(render_marker(marker)) == marker
    for text in ("", "version: x", "- 1", "version: 0", "version: true", ": :"):
        assert parse_marker(text) is None


def test_write_export_replaces_its_own_files_but_not_hand_written_ones(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("teams: {}\n")
    with pytest.raises(FileExistsError, match="--force"):
        write_export(tmp_path, export_files(BUNDLE), Marker(1, bundle_hash(BUNDLE)), force=False)
    write_export(tmp_path, export_files(BUNDLE), Marker(1, bundle_hash(BUNDLE)), force=True)
    assert not (tmp_path / "mine.yaml").exists()
    assert read_marker(tmp_path) == Marker(1, bundle_hash(BUNDLE))
    write_export(
        tmp_path, export_files({"teams": {}}), Marker(2, "i"), force=False
    )  # an export: no force
    assert sorted(p.name for p in tmp_path.iterdir()) == [MARKER_NAME, "teams.yaml"]


def test_canonical_is_plain_json_or_refused() -> None:
    assert canonical({"a": (1, 2)}) == {"a": [1, 2]}
    with pytest.raises(PolicyInvalid, match="not representable as JSON"):
        canonical({"a": object()})


def test_files_to_rewrite_touches_only_the_files_whose_part_changed() -> None:
    """Each section and entry stays in the file it is in; new ones get <section>.yaml."""
    from gateway.policy.bundle_text import files_to_rewrite

    where = {("teams", "a"): "one.yaml", ("teams", "b"): "two.yaml", ("models",): "one.yaml"}
    old = {"models": {"m": 1}, "teams": {"a": {"x": 1}, "b": {"x": 2}}}
    new = {"models": {"m": 1}, "teams": {"a": {"x": 1}, "b": {"x": 3}}, "routing": {"retries": 1}}
    plan = files_to_rewrite(old, new, where.get)
    assert set(plan) == {"two.yaml", "routing.yaml"}
    assert plan["two.yaml"] == "teams:\n  b:\n    x: 3\n"
    gone = files_to_rewrite(old, {"models": {"m": 1}, "teams": {"a": {"x": 1}}}, where.get)
    assert gone == {"two.yaml": None}


def test_export_over_an_export_never_shows_a_reader_a_missing_or_partial_file(
    tmp_path: Path,
) -> None:
    """A folder `serve --policies` watches, exported into again and again (`export --force`):
    whenever a reader looks, every file is there, whole, of one version or the other."""
    versions = [
        export_files({**BUNDLE, "teams": {f"{tag}{i}": {"models": ["*"]} for i in range(3000)}})
        for tag in ("a", "b")
    ]
    texts = {name: {files[name] for files in versions} for name in versions[0]}
    write_export(tmp_path, versions[0], Marker(1, "x"), force=True)
    seen: list[str] = []
    done = threading.Event()

    def look() -> None:
        while not done.is_set():
            names = {p.name for p in tmp_path.iterdir() if p.suffix == ".yaml"}
            if names != set(texts):
                seen.append(f"files: {sorted(names)}")
            for name in names & set(texts):
                try:
                    text = (tmp_path / name).read_text()
                except FileNotFoundError:
                    text = "(gone)"
                if text not in texts[name]:
                    seen.append(f"{name}: {text[:40]!r}")

    reader = threading.Thread(target=look)
    reader.start()
    try:
        for round_ in range(40):
            write_export(tmp_path, versions[round_ % 2], Marker(round_ + 2, "x"), force=True)
    finally:
        done.set()
        reader.join()
    assert seen == []


@pytest.mark.parametrize(("old", "new"), [(100, 100.0), (1, True), (0, False), ("1", 1)], ids=repr)
def test_a_number_written_another_way_rewrites_its_file(old, new):
    """`usd: 100` and `usd: 100.0` are one value to Python, not to the version's hash: the
    folder kept `100`, read as an edit of its own, and undid the version (probe p21)."""
    before = {"teams.yaml": {"teams": {"demo": {"budgets": [{"period": "day", "usd": old}]}}}}
    after = {"teams.yaml": {"teams": {"demo": {"budgets": [{"period": "day", "usd": new}]}}}}
    assert list(plan_of(before, after)) == ["teams.yaml"]
    assert plan_of(before, before) == {}
