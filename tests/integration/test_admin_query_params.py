"""The admin API's GET routes read their query as the finance report does: a repeated or
unknown parameter is a 400 naming it (never a silent pick of one value, never ignored),
and a version id no version can have (negative, not a number) is the 404
`policy_version_not_found` of any missing version, not "Unknown path"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.admin import ADMIN_POLICY, Admin
from tests.support.gateway import running_gateway


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    async with running_gateway(tmp_path, ADMIN_POLICY) as gw, aiohttp.ClientSession() as http:
        yield Admin(gw.origin, http, await gw.token(scopes=["gateway:admin"]))


def assert_refused(status: int, body: Any, param: str) -> None:
    assert status == 400, body
    error = body["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        None,
        param,
    ), error


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/admin/teams/demo/usage?user=a&user=b", "user"),
        ("/admin/policy/versions?limit=1&limit=2", "limit"),
        ("/admin/policy/versions?before=1&before=2", "before"),
        ("/admin/audit?limit=5&limit=5", "limit"),
        ("/admin/audit?before=9&before=1", "before"),
        ("/admin/policy/diff?from=1&from=1&to=1", "from"),
        ("/admin/policy/diff?from=1&to=1&to=1", "to"),
    ],
)
async def test_a_repeated_parameter_is_a_400_naming_it(admin: Admin, path: str, param: str) -> None:
    """As `GET /finance/reports/usage?month=…&month=…` is: which value was meant is unknown."""
    status, body = await admin.call("GET", path)
    assert_refused(status, body, param)
    assert body["error"]["message"] == f"Parameter '{param}' is given 2 times."


@pytest.mark.parametrize(
    "path",
    [
        "/admin/policy?foo=1",
        "/admin/policy/versions?foo=1",
        "/admin/policy/versions/1?foo=1",
        "/admin/policy/diff?from=1&to=1&foo=1",
        "/admin/audit?foo=1",
        "/admin/teams/demo/usage?foo=1",
        "/admin/clients?foo=1",
    ],
)
async def test_an_unknown_parameter_is_a_400_naming_it(admin: Admin, path: str) -> None:
    """A misspelt `limit` or `user` must not silently answer something else."""
    status, body = await admin.call("GET", path)
    assert_refused(status, body, "foo")
    assert body["error"]["message"] == "Unknown parameter: 'foo'."


@pytest.mark.parametrize("version", ["-1", "abc", "1.5", "+1", "%20", "-0", "1e3"])
async def test_a_version_id_no_version_can_have_is_policy_version_not_found(
    admin: Admin, version: str
) -> None:
    """404 `policy_version_not_found` naming `version`, as for `/versions/99`."""
    status, body = await admin.call("GET", f"/admin/policy/versions/{version}")
    assert status == 404, body
    error = body["error"]
    assert (error["code"], error["param"]) == ("policy_version_not_found", "version"), error
    assert error["message"].startswith("There is no policy version ")
    status, missing = await admin.call("GET", "/admin/policy/versions/99")
    assert status == 404 and missing["error"]["code"] == "policy_version_not_found"
