"""The query parameters /openapi.json declares: each with the type and values its route
takes, so a generated client can send `month=2026-11`."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from gateway.api.openapi import openapi_document
from gateway.errors import InvalidRequest
from gateway.usage.report_request import parse_format, parse_group_by, parse_month

NOW_MS = 1_800_000_000_000  # 2027-01-15


def query_parameters() -> dict[tuple[str, str], dict[str, Any]]:
    """{(path, name): parameter} of every documented query parameter."""
    return {
        (path, parameter["name"]): parameter
        for path, operations in openapi_document()["paths"].items()
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query"
    }


def is_valid(schema: dict[str, Any], value: Any) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(value)


def test_each_query_parameter_has_its_own_type():
    """month, format, group_by and user are strings (group_by repeatable); counts and
    versions are integers."""
    types = {
        (path, name): parameter["schema"]["type"]
        for (path, name), parameter in query_parameters().items()
    }
    assert types == {
        ("/admin/teams/{team}/usage", "user"): "string",
        ("/admin/policy/versions", "limit"): "integer",
        ("/admin/policy/versions", "before"): "integer",
        ("/admin/policy/diff", "from"): "integer",
        ("/admin/policy/diff", "to"): "integer",
        ("/admin/audit", "limit"): "integer",
        ("/admin/audit", "before"): "integer",
        ("/admin/cache", "team"): "string",
        ("/admin/cache", "model"): "string",
        ("/finance/reports/usage", "month"): "string",
        ("/finance/reports/usage", "format"): "string",
        ("/finance/reports/usage", "group_by"): "array",
    }
    for parameter in query_parameters().values():
        jsonschema.Draft202012Validator.check_schema(parameter["schema"])
    month = query_parameters()[("/finance/reports/usage", "month")]["schema"]
    assert not is_valid(month, 202611)  # what a client typed from `integer` sent


@pytest.mark.parametrize("text", ["2026-11", "1970-01", "2026-13", "0000-00"])
def test_month_schema_takes_what_is_written_yyyy_mm(text):
    """Any YYYY-MM matches (the route then checks the month exists and has begun)."""
    schema = query_parameters()[("/finance/reports/usage", "month")]["schema"]
    assert is_valid(schema, text)


@pytest.mark.parametrize("text", ["202611", "2026-1", "2026-11-01", "26-11", ""])
def test_month_schema_refuses_what_the_route_refuses(text):
    schema = query_parameters()[("/finance/reports/usage", "month")]["schema"]
    assert not is_valid(schema, text)
    with pytest.raises(InvalidRequest):
        parse_month(text, NOW_MS)


def test_format_schema_lists_the_report_formats():
    parameter = query_parameters()[("/finance/reports/usage", "format")]
    assert parameter["schema"] == {
        "type": "string",
        "enum": ["csv", "json", "focus"],
        "default": "csv",
    }
    for text in parameter["schema"]["enum"]:
        parse_format(text)
    assert not is_valid(parameter["schema"], "xml")


@pytest.mark.parametrize(
    ("values", "valid"),
    [
        (["team,model"], True),
        (["team", "model"], True),  # repeated: the route joins them
        (["day, provider ,cache"], True),
        (["subject,client_id"], True),
        ([""], True),  # one row for the month
        (["team,"], False),
        (["nope"], False),
        (["team;model"], False),
        ([3], False),
    ],
)
def test_group_by_schema_is_repeatable_comma_separated_keys(values, valid):
    """Each value is comma-separated group keys, the value repeatable as the route takes it;
    what the schema takes the route takes, what it refuses the route refuses."""
    parameter = query_parameters()[("/finance/reports/usage", "group_by")]
    assert (parameter["style"], parameter["explode"]) == ("form", True)
    assert is_valid(parameter["schema"], values) is valid
    if all(isinstance(value, str) for value in values):
        if valid:
            parse_group_by(",".join(values))
        else:
            with pytest.raises(InvalidRequest):
                parse_group_by(",".join(values))


def test_user_and_page_schemas_have_their_bounds():
    """An empty user is refused by the route, so by the schema; limit is 1 to 1000."""
    parameters = query_parameters()
    user = parameters[("/admin/teams/{team}/usage", "user")]["schema"]
    assert is_valid(user, "alice") and not is_valid(user, "") and not is_valid(user, 1)
    limit = parameters[("/admin/audit", "limit")]["schema"]
    assert is_valid(limit, 1) and is_valid(limit, 1000)
    assert not is_valid(limit, 0) and not is_valid(limit, 1001) and not is_valid(limit, "10")
