"""Admin API for the policy (SPEC §5): versions, changes, diff, rollback, the audit log.

Parses JSON, checks the `gateway:admin` scope (no token → 401, without the
scope → 403 insufficient_scope), calls `PolicyService` (the CLI calls it too)
and renders JSON; no policy rule lives here. The token's subject is the author
of a change; its audit entry also records the token's client_id, issuer and team
(`via`), so an API change is told from a CLI one whatever the subject says. Errors
are OpenAI-shaped; an invalid policy answers 400 with every issue in
`error.errors`, a stale `base_version` 409. A GET refuses (400) a query
parameter it does not take, or one given twice, as the finance report does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.body import read_json_object
from gateway.api.edge import Endpoint, Handler, json_response, requires_scope
from gateway.api.query import check_query
from gateway.audit import ApiActor, ApiCaller, AuditEntry
from gateway.auth.principal import SCOPE_ADMIN, Principal
from gateway.errors import InvalidRequest, NotFound, cut, escaped, quoted
from gateway.limits.backend import BackendUnavailable
from gateway.limits.errors import LimitsUnavailable
from gateway.limits.view import usage_view
from gateway.policy.errors import MAPPING_EXPECTED, PolicyInvalid, PolicyIssue
from gateway.policy.service import MAX_REASON_CHARS, Applied, VersionNotFound
from gateway.policy.versions import PolicyVersion
from gateway.services import Services

MAX_LIST = 1000
REASON = "Why: kept with the version and in the audit log."


class InvalidPolicy(InvalidRequest):
    """400 naming every issue: `message` joins them, `errors` lists them as objects;
    `param` is the policy field when one issue names one (`auth.issuers[0].issuer`)."""

    code = "invalid_policy"

    def __init__(self, issues: list[PolicyIssue]) -> None:
        listed = "; ".join(str(issue) for issue in issues)
        errors = "1 error" if len(issues) == 1 else f"{len(issues)} errors"
        # The field may hold the caller's own keys (a team name): echoed cut to a bound.
        param = (cut(issues[0].field) or None) if len(issues) == 1 else None
        super().__init__(f"The policy is invalid ({errors}): {listed}", param=param)
        self.issues = issues

    def body(self) -> dict[str, object]:
        body = super().body()
        error = body["error"]
        assert isinstance(error, dict)
        error["errors"] = [
            {"location": i.location, "field": i.field, "message": i.message} for i in self.issues
        ]
        return body


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=_Body)
T = TypeVar("T")


class PolicyPut(_Body):
    bundle: dict[str, Any] = Field(description="Every section, `${VAR}` references as written.")
    reason: str = Field("", max_length=MAX_REASON_CHARS, description=REASON)
    # null is a first version's base (etcd's create-if-absent): never "no check", so a
    # client that lost track of the version cannot overwrite one it has not seen.
    base_version: StrictInt | None = Field(
        description="The running version this change is on; null only while the database "
        "holds no version yet (409 once one exists)."
    )


class TeamPatch(_Body):
    changes: dict[str, Any] = Field(
        description="JSON merge patch (RFC 7386) of the team's models, budgets, limits, "
        "per_user and max_tokens_default; its other fields change with PUT /admin/policy."
    )
    reason: str = Field("", max_length=MAX_REASON_CHARS, description=REASON)
    # Not nullable: a team to patch means a running version to name.
    base_version: StrictInt = Field(description="The running version this change is on.")


class Rollback(_Body):
    version: StrictInt = Field(description="The version whose policy becomes the new version.")
    reason: str = Field("", max_length=MAX_REASON_CHARS, description=REASON)
    # Optional, as a rollback is an operator's undo: given, a rollback decided on a version
    # another admin has since changed is a 409, not a silent revert of their change.
    base_version: StrictInt | None = Field(
        None, description="The running version this rollback was decided on (409 if stale)."
    )


def _admin_only(handler: Handler) -> Endpoint:
    """Admin scope required; a policy the service refuses becomes a 400 listing every issue."""

    async def policy_errors_as_400(
        request: Request, services: Services, principal: Principal
    ) -> Response:
        try:
            return await handler(request, services, principal)
        except PolicyInvalid as invalid:
            raise InvalidPolicy(invalid.issues) from None

    policy_errors_as_400.__name__ = handler.__name__
    return requires_scope(SCOPE_ADMIN, policy_errors_as_400)


async def _parse(request: Request, services: Services, model: type[M]) -> M:
    body = await read_json_object(request, services.settings.max_body_bytes)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        # The location may hold the caller's own keys: echoed cut to a bound, escaped.
        param = cut(escaped(".".join(str(part) for part in error["loc"]))) or None
        if error["type"] == "missing":
            raise InvalidRequest(
                f"Missing required parameter: {quoted(param)}.", param=param
            ) from None
        if error["type"] == "extra_forbidden":
            raise InvalidRequest(f"Unknown parameter: {quoted(param)}.", param=param) from None
        # pydantic's "…or instance of TeamSpec" names a Python class: say it in JSON's words
        why = "expected an object" if error["type"] in MAPPING_EXPECTED else cut(error["msg"])
        raise InvalidRequest(f"Invalid {quoted(param)}: {why}.", param=param) from None


def _int_param(request: Request, name: str, default: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            raise InvalidRequest(f"Missing required parameter: '{name}'.", param=name)
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"Invalid '{name}': expected an integer.", param=name) from None


# A version id as a path segment: an optional sign and digits, few enough to convert
# cheaply; anything else names no version (a 404, as a number no version has).
_VERSION_ID = re.compile(r"-?[0-9]{1,19}")

# A `before` cursor is an id or version number: the columns are SQL INTEGERs
# (32-bit in PostgreSQL), so a number beyond them names nothing and could only
# overflow the driver.
MAX_CURSOR = 2**31 - 1


def _ranged_param(request: Request, name: str, low: int, high: int, default: int) -> int:
    value = _int_param(request, name, default)
    if not low <= value <= high:
        raise InvalidRequest(
            f"Invalid '{name}': must be from {low} to {high} (got {_shown(value)}).", param=name
        )
    return value


def _shown(value: int) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:20]}… ({len(text)} digits)"


def _page(request: Request) -> tuple[int, int | None]:
    """`limit` (1..MAX_LIST, default 100) and the `before` cursor of a newest-first list."""
    check_query(request.query_params, ("limit", "before"))
    limit = _ranged_param(request, "limit", 1, MAX_LIST, 100)
    if "before" not in request.query_params:
        return limit, None
    return limit, _ranged_param(request, "before", 1, MAX_CURSOR, MAX_CURSOR)


def _list(
    items: Sequence[T], limit: int, render: Callable[[T], object], cursor: Callable[[T], int]
) -> Response:
    """OpenAI's list shape; `has_more` says whether `before=<last_id>` finds more."""
    page = items[:limit]
    return json_response(
        {
            "object": "list",
            "data": [render(item) for item in page],
            "has_more": len(items) > limit,
            "last_id": cursor(page[-1]) if page else None,
        }
    )


def api_actor(principal: Principal) -> ApiActor:
    """The caller as the actor of a change: its subject, with its client_id, issuer and
    team for the audit entry's `via`."""
    caller = ApiCaller(principal.client_id, principal.issuer, principal.team)
    return ApiActor(principal.subject, caller)


def _applied(applied: Applied) -> Response:
    """The running version after a change, whether it changed, and what `policy check`
    would warn of in the bundle sent (`[]`: nothing)."""
    return json_response(
        {
            **applied.version.as_json(),
            "changed": applied.is_new,
            "warnings": list(applied.warnings),
        }
    )


async def get_policy(request: Request, services: Services, principal: Principal) -> Response:
    """The version this replica enforces; and, when the database holds a newer one
    it does not (yet) enforce, that number and why (e.g. a `${VAR}` it lacks). Under
    `serve --policies DIR`, `folder` says which version DIR's files hold."""
    check_query(request.query_params, ())
    versions = services.policy_versions
    await versions.catch_up()  # another worker's write, read right after it: enforced here too
    newest = await versions.newest_number()
    enforced = services.policy.version
    if enforced is None or newest is None:  # a bare database, or a gateway run without one
        running = await versions.current()
        body: dict[str, Any] = running.as_json() if running else {"version": None, "bundle": None}
    else:
        body = (await versions.get(enforced)).as_json()
    if enforced is not None and newest is not None and newest != enforced:
        body["newest_version"] = newest
        try:
            await versions.compile(await versions.get(newest))
            body["newest_problem"] = None  # valid here: this replica picks it up within a second
        except PolicyInvalid as invalid:
            body["newest_problem"] = "; ".join(str(issue) for issue in invalid.issues)
    folder = versions.folder_status()
    if folder is not None:
        body["folder"] = folder
    return json_response(body)


async def put_policy(request: Request, services: Services, principal: Principal) -> Response:
    body = await _parse(request, services, PolicyPut)
    applied = await services.policy_versions.apply(
        body.bundle,
        author=api_actor(principal),
        reason=body.reason,
        base_version=body.base_version,
    )
    return _applied(applied)


async def patch_team(request: Request, services: Services, principal: Principal) -> Response:
    body = await _parse(request, services, TeamPatch)
    applied = await services.policy_versions.patch_team(
        request.path_params["team"],
        body.changes,
        author=api_actor(principal),
        reason=body.reason,
        base_version=body.base_version,
    )
    return _applied(applied)


async def list_versions(request: Request, services: Services, principal: Principal) -> Response:
    limit, before = _page(request)
    versions = await services.policy_versions.history(limit + 1, before)
    return _list(versions, limit, PolicyVersion.summary, lambda v: v.version)


async def get_version(request: Request, services: Services, principal: Principal) -> Response:
    check_query(request.query_params, ())
    raw = request.path_params["version"]
    if _VERSION_ID.fullmatch(raw) is None:  # `-1`, `abc`: as unknown as version 99
        raise VersionNotFound(
            f"There is no policy version {quoted(escaped(raw))}.", param="version"
        )
    version = await services.policy_versions.get(int(raw))
    return json_response(version.as_json())


async def diff_versions(request: Request, services: Services, principal: Principal) -> Response:
    check_query(request.query_params, ("from", "to"))
    old, new = _int_param(request, "from"), _int_param(request, "to")
    diff = await services.policy_versions.diff(old, new)
    return json_response({"from": old, "to": new, "diff": diff})


async def rollback(request: Request, services: Services, principal: Principal) -> Response:
    body = await _parse(request, services, Rollback)
    applied = await services.policy_versions.rollback(
        body.version,
        author=api_actor(principal),
        reason=body.reason,
        base_version=body.base_version,
    )
    return _applied(applied)


async def audit(request: Request, services: Services, principal: Principal) -> Response:
    limit, before = _page(request)
    entries = await services.policy_versions.audit(limit + 1, before)
    return _list(entries, limit, AuditEntry.as_json, lambda e: e.id)


async def team_usage(request: Request, services: Services, principal: Principal) -> Response:
    """Every budget and limit of a team (and, with ?user=SUBJECT, one user) right now."""
    check_query(request.query_params, ("user",))
    name = request.path_params["team"]
    await services.policy_versions.catch_up()  # the limits another worker's write just set
    policy = services.policy.current()
    team = policy.teams.get(name)
    if team is None:
        raise NotFound(f"There is no team {quoted(name)} in the running policy.", param="team")
    user = request.query_params.get("user")
    if user == "":  # a user left out of a script's URL: not the team's view by surprise
        raise InvalidRequest(
            "Parameter 'user' is empty: name a subject, or leave it out.", param="user"
        )
    try:
        view = await usage_view(services.limits, policy, team, user)
    except BackendUnavailable as error:
        raise LimitsUnavailable(f"Usage cannot be read right now: {error}") from None
    return json_response(view)


routes = [
    Route("/admin/policy", _admin_only(get_policy), methods=["GET"]),
    Route("/admin/policy", _admin_only(put_policy), methods=["PUT"]),
    Route("/admin/teams/{team}", _admin_only(patch_team), methods=["PATCH"]),
    Route("/admin/teams/{team}/usage", _admin_only(team_usage), methods=["GET"]),  # issue 9
    Route("/admin/policy/versions", _admin_only(list_versions), methods=["GET"]),
    Route("/admin/policy/versions/{version}", _admin_only(get_version), methods=["GET"]),
    Route("/admin/policy/diff", _admin_only(diff_versions), methods=["GET"]),
    Route("/admin/policy/rollback", _admin_only(rollback), methods=["POST"]),
    Route("/admin/audit", _admin_only(audit), methods=["GET"]),
]
