"""The JSON Schema editors use for policy files, generated from the pydantic `PolicyBundle`.

`policies/policy.schema.json` is this function's output, committed; a test
fails when it is stale. Regenerate with `gateway policy schema -o policies/policy.schema.json`.
Every section is optional at the top level, so each file of a split bundle validates alone.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.policy.schema import PolicyBundle

SCHEMA_FILE_NAME = "policy.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def policy_json_schema() -> dict[str, Any]:
    schema = PolicyBundle.model_json_schema()
    return {
        "$schema": DIALECT,
        "title": "LLM gateway policy bundle",
        "description": (
            "One file of a policy bundle (a folder of YAML files); sections may be split "
            "across files. Secrets only by reference: ${ENV_VAR} or ${file:/run/secrets/NAME}."
        ),
        **{key: value for key, value in schema.items() if key != "title"},
    }


def render_json_schema() -> str:
    return json.dumps(policy_json_schema(), indent=2, ensure_ascii=False) + "\n"
