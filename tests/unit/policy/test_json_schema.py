"""The editors' JSON Schema (policies/policy.schema.json) is current and accepts the examples."""

import json
from pathlib import Path

import pytest
import yaml

from gateway.policy.json_schema import SCHEMA_FILE_NAME, policy_json_schema, render_json_schema

REPO = Path(__file__).parents[3]
COMMITTED = REPO / "policies" / SCHEMA_FILE_NAME


def test_the_committed_schema_is_current() -> None:
    """Fails when the pydantic schema changed: run `gateway policy schema -o policies/policy.schema.json`."""
    assert COMMITTED.read_text(encoding="utf-8") == render_json_schema(), (
        "policies/policy.schema.json is stale: regenerate it with "
        "`gateway policy schema -o policies/policy.schema.json`"
    )


def test_every_example_file_is_valid_and_mistakes_are_not() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    files = [*(REPO / "policies").glob("*.yaml"), *(REPO / "gateway/policy/example").glob("*.yaml")]
    assert files
    for path in files:
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, f"{path}: {errors[0].message}"
    assert list(validator.iter_errors({"teams": {"a": {"colour": "red"}}}))
    assert list(validator.iter_errors({"providers": {"p": {"type": "nope"}}}))


def test_the_schema_says_its_dialect() -> None:
    assert policy_json_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
