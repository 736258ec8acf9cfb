"""A bundle the admin API takes fits a policy folder: a section past the loader's limits is
split across files, and only an entry no file could hold is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.policy import bundle_text
from gateway.policy.errors import PolicyInvalid
from gateway.policy.folder_limits import export_files, export_issues, rewrite_plan, yaml_values
from gateway.policy.loader import MAX_FILE_BYTES, MAX_NODES, load_bundle


def keywords_bundle(count: int) -> dict[str, Any]:
    rule = {
        "detector": "keywords",
        "name": "kw",
        "action": "flag",
        "keywords": [f"w{i}" for i in range(count)],
    }
    return {"guardrails": {"baseline": {"input": [rule]}}}


def teams_bundle(count: int) -> dict[str, Any]:
    return {"teams": {f"t{i}": {"models": ["m"]} for i in range(count)}}


def exported(tmp_path: Path, raw: dict[str, Any]) -> Path:
    folder = tmp_path / "export"
    bundle_text.write_export(folder, export_files(raw), bundle_text.Marker(1, "x"), force=True)
    return folder


def test_a_section_of_exactly_the_most_values_exports_as_one_file(tmp_path: Path) -> None:
    """At MAX_NODES values the file loads; the count is the loader's, to the value."""
    overhead = yaml_values(keywords_bundle(0))
    raw = keywords_bundle(MAX_NODES - overhead)
    assert export_issues(raw) == []
    assert list(export_files(raw)) == ["guardrails.yaml"]
    assert load_bundle(exported(tmp_path, raw)).raw == raw


def test_a_section_past_the_most_values_is_split_and_loads_back(tmp_path: Path) -> None:
    """24,000 teams (120,001 values): teams.yaml and teams-2.yaml, equal to the bundle."""
    raw = teams_bundle(24_000)
    assert yaml_values(raw) > MAX_NODES
    assert export_issues(raw) == []
    assert list(export_files(raw)) == ["teams.yaml", "teams-2.yaml"]
    assert load_bundle(exported(tmp_path, raw)).raw == raw


def test_a_section_past_the_file_size_is_split_and_loads_back(tmp_path: Path) -> None:
    """Few values but long text: split by size, as the loader refuses a file over 4 MiB."""
    rules = {
        f"long{i}": {"input": [{"pattern": "x" * 2000, "name": "long", "action": "flag"}]}
        for i in range(MAX_FILE_BYTES // 2000 + 1)
    }
    raw = {"guardrails": rules}
    assert export_issues(raw) == []
    assert list(export_files(raw)) == ["guardrails.yaml", "guardrails-2.yaml"]
    assert load_bundle(exported(tmp_path, raw)).raw == raw


def test_one_entry_past_the_most_values_is_refused(tmp_path: Path) -> None:
    """One guardrail past MAX_NODES alone: refused, naming it, the file and the limit."""
    raw = keywords_bundle(MAX_NODES - yaml_values(keywords_bundle(0)) + 1)
    [issue] = export_issues(raw)
    assert issue.field == "guardrails.baseline"
    assert "guardrails.yaml" in issue.message and f"{MAX_NODES}" in issue.message
    with pytest.raises(PolicyInvalid, match=f"more than the {MAX_NODES}"):
        export_files(raw)


def test_one_entry_past_the_file_size_is_refused() -> None:
    rules = [
        {"pattern": "x" * 4096, "name": f"long{i}", "action": "flag"}
        for i in range(MAX_FILE_BYTES // 4096 + 1)
    ]
    [issue] = export_issues({"guardrails": {"big": {"input": rules}}})
    assert "MiB" in issue.message and issue.field == "guardrails.big"


def test_an_unnamed_section_past_the_limits_is_refused() -> None:
    """`auth` is not made of named entries: it cannot be split."""
    issuers = [{"issuer": f"https://i{i}/", "audience": "a"} for i in range(MAX_NODES // 4)]
    [issue] = export_issues({"auth": {"issuers": issuers}})
    assert issue.field == "auth"


def test_a_rewrite_that_outgrows_a_file_moves_the_rest_to_a_new_one() -> None:
    """A folder's teams.yaml growing past the limit: the part past it goes to a name the
    folder does not use (teams-2.yaml is taken by hand), the other files stay untouched."""
    old = {"models": {"m": {}}, **teams_bundle(10), "routing": {"retries": 1}}
    where = {("models",): "models.yaml", ("routing",): "teams-2.yaml"}

    def file_of(path: tuple[str, ...]) -> str | None:
        return where.get(path) or ("teams.yaml" if path[0] == "teams" else None)

    new = {**old, **teams_bundle(24_000)}
    plan = rewrite_plan(old, new, file_of)
    assert set(plan) == {"teams.yaml", "teams-3.yaml"}
    assert yaml_values(teams_bundle(24_000)) > MAX_NODES


def test_an_empty_bundle_exports_as_one_file_that_reads_back_empty(tmp_path: Path) -> None:
    """A folder with no *.yaml is refused, so an empty bundle is policy.yaml holding `{}`."""
    files = export_files({})
    assert list(files) == ["policy.yaml"]
    assert files["policy.yaml"].startswith("# ")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert load_bundle(tmp_path).raw == {}


def test_a_rewrite_to_and_from_an_empty_bundle_keeps_a_file_written_before_any_deleted() -> None:
    """To empty: policy.yaml written, then the old files deleted; back: the reverse."""
    old = {"teams": {"demo": {"models": ["*"]}}}

    def nowhere(_path: tuple[str, ...]) -> str | None:
        return None

    emptied = rewrite_plan(old, {}, nowhere)
    assert list(emptied) == ["policy.yaml", "teams.yaml"]
    assert (
        emptied["teams.yaml"] is None and emptied["policy.yaml"] == export_files({})["policy.yaml"]
    )
    refilled = rewrite_plan({}, old, nowhere)
    assert list(refilled) == ["teams.yaml", "policy.yaml"] and refilled["policy.yaml"] is None
