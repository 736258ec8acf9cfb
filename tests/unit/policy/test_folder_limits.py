"""A bundle the admin API takes fits a policy folder: the same limits as the loader's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.policy import bundle_text
from gateway.policy.errors import PolicyInvalid
from gateway.policy.folder_limits import export_issues, yaml_values
from gateway.policy.loader import MAX_FILE_BYTES, MAX_NODES, load_bundle


def keywords_bundle(count: int) -> dict[str, Any]:
    rule = {
        "detector": "keywords",
        "name": "kw",
        "action": "flag",
        "keywords": [f"w{i}" for i in range(count)],
    }
    return {"guardrails": {"baseline": {"input": [rule]}}}


def exported(tmp_path: Path, raw: dict[str, Any]) -> Path:
    folder = tmp_path / "export"
    bundle_text.write_export(folder, raw, bundle_text.Marker(1, "x"), force=True)
    return folder


def test_a_section_of_exactly_the_most_values_exports_and_loads_back(tmp_path: Path) -> None:
    """At MAX_NODES values the file loads; the count is the loader's, to the value."""
    overhead = yaml_values(keywords_bundle(0))
    raw = keywords_bundle(MAX_NODES - overhead)
    assert export_issues(raw) == []
    assert load_bundle(exported(tmp_path, raw)).raw == raw


def test_one_value_more_is_refused_as_the_loader_refuses_its_export(tmp_path: Path) -> None:
    """One value past MAX_NODES: refused, naming the section, the file and the limit."""
    raw = keywords_bundle(MAX_NODES - yaml_values(keywords_bundle(0)) + 1)
    [issue] = export_issues(raw)
    assert issue.field == "guardrails"
    assert "guardrails.yaml" in issue.message and f"{MAX_NODES}" in issue.message
    with pytest.raises(PolicyInvalid, match=f"more than {MAX_NODES} YAML values"):
        load_bundle(exported(tmp_path, raw))


def test_a_section_past_the_file_size_is_refused() -> None:
    """Few values but long text: refused by size, as the loader refuses a file over 4 MiB."""
    rules = [
        {"pattern": "x" * 4096, "name": f"long{i}", "action": "flag"}
        for i in range(MAX_FILE_BYTES // 4096 + 1)
    ]
    raw = {"guardrails": {"big": {"input": rules}}}
    [issue] = export_issues(raw)
    assert "MiB" in issue.message and issue.field == "guardrails"
