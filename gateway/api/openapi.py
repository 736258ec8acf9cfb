"""`GET /openapi.json`: an OpenAPI 3.1 document of the admin, finance and OAuth endpoints.

Request bodies come from the pydantic models the handlers parse with (and the
policy bundle from `PolicyBundle`), so they cannot drift; responses are
written out here. A test checks that every admin, finance and OAuth route is documented.
With `--admin-port`, each listener's document lists only the paths it serves.
The `/v1` inference API is OpenAI's own and documented by OpenAI.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import __version__
from gateway.api.admin import MAX_CURSOR, MAX_LIST, PolicyPut, Rollback, TeamPatch
from gateway.api.edge import request_id_of
from gateway.api.planes import listener_serves
from gateway.policy.schema import PolicyBundle
from gateway.usage.report_request import GroupKey, ReportFormat

REF = "#/components/schemas/{model}"
ADMIN = [{"oauth2": ["gateway:admin"]}]
_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _list_of(name: str) -> dict[str, Any]:
    return _obj(
        ["object", "data"], object={"const": "list"}, data={"type": "array", "items": _ref(name)}
    )


def _page_of(name: str) -> dict[str, Any]:
    page = _list_of(name)
    page["required"] += ["has_more", "last_id"]
    page["properties"].update(has_more={"type": "boolean"}, last_id={"type": ["integer", "null"]})
    return page


_STR, _INT, _NULL_INT = {"type": "string"}, {"type": "integer"}, {"type": ["integer", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_SUMMARY = {
    "version": _INT,
    "parent": _NULL_INT,
    "author": _STR,
    "created_at": _TIME,
    "reason": _STR,
    "hash": _STR,
}
_CLIENT = {
    "client_id": _STR,
    "team": _STR,
    "name": {"type": ["string", "null"]},
    "scopes": {"type": "array", "items": _STR},
    "created_at": _TIME,
    "revoked_at": {"type": ["string", "null"], "format": "date-time"},
}
RESPONSE_SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        ["error"],
        error=_obj(
            ["message", "type", "param", "code"],
            message=_STR,
            type=_STR,
            param={"type": ["string", "null"]},
            code={"type": ["string", "null"]},
            errors={
                "type": "array",
                "description": "400 invalid_policy only: every issue found.",
                "items": _obj(
                    ["location", "field", "message"], location=_STR, field=_STR, message=_STR
                ),
            },
        ),
    ),
    "PolicyVersionSummary": _obj(list(_SUMMARY), **_SUMMARY),
    "PolicyVersion": _obj([*_SUMMARY, "bundle"], **_SUMMARY, bundle=_ref("PolicyBundle")),
    "RunningPolicy": _obj(
        [*_SUMMARY, "bundle"],
        **_SUMMARY,
        bundle=_ref("PolicyBundle"),
        newest_version={
            "type": "integer",
            "description": "Present when the database holds a newer version than this "
            "replica enforces.",
        },
        newest_problem={
            "type": ["string", "null"],
            "description": "Why this replica cannot enforce the newest version (null: it "
            "is being picked up).",
        },
    ),
    "PolicyChange": _obj(
        [*_SUMMARY, "bundle", "changed", "warnings"],
        **_SUMMARY,
        bundle=_ref("PolicyBundle"),
        changed={"type": "boolean", "description": "false: equal to the running version."},
        warnings={
            "type": "array",
            "items": _STR,
            "description": "What `gateway policy check` would warn of in the bundle sent "
            "(e.g. a USD budget over a model with no known price); empty when nothing.",
        },
    ),
    "PolicyVersionList": _page_of("PolicyVersionSummary"),
    "PolicyDiff": _obj(["from", "to", "diff"], **{"from": _INT, "to": _INT}, diff=_STR),
    "AuditEntry": _obj(
        ["id", "at", "actor", "action", "target", "reason", "before", "after"],
        id=_INT,
        at=_TIME,
        actor=_STR,
        action=_STR,
        target={"type": ["string", "null"]},
        reason={"type": ["string", "null"]},
        before={},
        after={},
        via={
            "type": ["object", "null"],
            "description": "An admin-API change's caller beyond `actor` (the token's "
            'subject): `{"channel": "admin-api", "client_id", "issuer", "team"}`; null for '
            "a change made otherwise (CLI, policy folder) or recorded before this field.",
        },
    ),
    "AuditList": _page_of("AuditEntry"),
    "Client": _obj(list(_CLIENT), **_CLIENT),
    "ClientCreated": _obj(
        [*_CLIENT, "client_secret"],
        **_CLIENT,
        client_secret=_STR,
        warning={
            "type": "string",
            "description": "Set when the team is not in the policy and the client may call "
            "models (gateway:invoke): its inference calls are refused until it is.",
        },
    ),
    "ClientList": _list_of("Client"),
    "ClientCreate": {
        **_obj(["team"], team=_STR, name=_STR, scopes={"type": "array", "items": _STR}),
        "additionalProperties": False,
    },
    "TokenRequest": _obj(
        ["grant_type"],
        grant_type={"const": "client_credentials"},
        scope={"type": "string", "description": "Space-separated scopes."},
        client_id={"type": "string", "description": "Or HTTP Basic authentication."},
        client_secret=_STR,
    ),
    "Token": _obj(
        ["access_token", "token_type", "expires_in"],
        access_token=_STR,
        token_type={"const": "Bearer"},
        expires_in=_INT,
        scope=_STR,
    ),
    "CacheCleared": _obj(
        ["object", "team", "model", "deleted"],
        object={"const": "cache.cleared"},
        team={"type": ["string", "null"]},
        model={"type": ["string", "null"]},
        deleted={**_INT, "description": "Entries removed (this worker's, without Redis)."},
    ),
    "OAuthError": _obj(["error"], error=_STR, error_description=_STR),
    "ServerMetadata": {"type": "object", "description": "RFC 8414 authorization server metadata."},
    "JWKS": _obj(["keys"], keys={"type": "array", "items": {"type": "object"}}),
    "TeamUsage": {  # issue 9: gateway/limits/view.py
        "type": "object",
        "description": "Every budget and limit of a team (and one user) with used, reserved, "
        "remaining and when its period resets; USD amounts as decimal strings.",
    },
}


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref(schema)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {
        400: "Invalid request or policy (every issue listed)",
        401: "No, bad or expired token",
        403: "The token lacks gateway:admin",
        404: "No such version, team or client",
        409: "base_version is not the running version",
        503: "The shared response cache (Redis) did not answer",
    }
    return {str(s): _answer(meaning[s], "Error") for s in (401, 403, *statuses)}


def _op(summary: str, ok: dict[str, Any], *errors: int, **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": ADMIN,
        "responses": {"200": ok, **_errors(*errors)},
        **extra,
    }


def _body(schema: str, media: str = _JSON) -> dict[str, Any]:
    return {"required": True, "content": {media: {"schema": _ref(schema)}}}


def _query(
    name: str, schema: dict[str, Any], description: str, *, required: bool = False, **extra: Any
) -> dict[str, Any]:
    """A query parameter; `extra` holds its serialization (`style`, `explode`)."""
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
        **extra,
    }


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


LIMIT = _query(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIST},
    "At most this many, newest first (default 100, at most 1000).",
)
BEFORE = _query(
    "before",
    {"type": "integer", "minimum": 1, "maximum": MAX_CURSOR},
    "Only those older than this id: the previous page's last_id.",
)
# One `group_by` value: group keys separated by commas (spaces around them allowed), or
# nothing at all (one row for the month); the finance route joins repeated values.
_GROUP_KEY = "(" + "|".join(key.value for key in GroupKey) + ")"
_GROUP_KEYS = rf"^\s*$|^\s*{_GROUP_KEY}\s*(,\s*{_GROUP_KEY}\s*)*$"
PATHS: dict[str, Any] = {
    "/admin/policy": {
        "get": _op(
            "The policy version this replica enforces",
            _answer("The enforced version", "RunningPolicy"),
        ),
        "put": _op(
            "Replace the whole bundle (a new version)",
            _answer("The running version after the change", "PolicyChange"),
            400,
            409,
            requestBody=_body("PolicyPut"),
        ),
    },
    "/admin/teams/{team}": {
        "patch": _op(
            "Change one team (JSON merge patch)",
            _answer("The running version after the change", "PolicyChange"),
            400,
            404,
            409,
            parameters=[_path("team", _STR)],
            requestBody=_body("TeamPatch"),
        )
    },
    "/admin/teams/{team}/usage": {
        "get": _op(
            "A team's budgets and limits now: used, reserved, remaining, reset",
            _answer("Usage", "TeamUsage"),
            404,
            parameters=[
                _path("team", _STR),
                _query(
                    "user", {"type": "string", "minLength": 1}, "Also this user (token subject)"
                ),
            ],
        )
    },
    "/admin/policy/versions": {
        "get": _op(
            "Policy versions, newest first",
            _answer("Versions", "PolicyVersionList"),
            400,
            parameters=[LIMIT, BEFORE],
        )
    },
    "/admin/policy/versions/{version}": {
        "get": _op(
            "One version",
            _answer("The version", "PolicyVersion"),
            404,
            parameters=[_path("version", _INT)],
        )
    },
    "/admin/policy/diff": {
        "get": _op(
            "Unified diff between two versions",
            _answer("The diff (empty when equal)", "PolicyDiff"),
            400,
            404,
            parameters=[
                _query("from", _INT, "Old version.", required=True),
                _query("to", _INT, "New version.", required=True),
            ],
        )
    },
    "/admin/policy/rollback": {
        "post": _op(
            "Make a new version equal to an older one",
            _answer("The running version after the rollback", "PolicyChange"),
            400,
            404,
            requestBody=_body("Rollback"),
        )
    },
    "/admin/audit": {
        "get": _op(
            "Every change: who, when, what, before and after",
            _answer("Entries", "AuditList"),
            400,
            parameters=[LIMIT, BEFORE],
        )
    },
    "/admin/clients": {
        "get": _op("OAuth clients, revoked ones included", _answer("Clients", "ClientList")),
        "post": {
            "summary": "Register a client",
            "security": ADMIN,
            "requestBody": _body("ClientCreate"),
            "responses": {
                "201": _answer("The client; its secret is shown this once", "ClientCreated"),
                **_errors(400),
            },
        },
    },
    "/admin/clients/{client_id}": {
        "delete": _op(
            "Revoke a client",
            _answer("The revoked client", "Client"),
            404,
            parameters=[_path("client_id", _STR)],
        )
    },
    "/admin/cache": {
        "delete": _op(
            "Empty the response cache of a team and/or a model (all when neither)",
            _answer("How many entries were removed", "CacheCleared"),
            400,
            503,
            parameters=[
                {"name": n, "in": "query", "required": False, "schema": _STR, "description": d}
                for n, d in (("team", "Only this team's."), ("model", "Only this model alias's."))
            ],
        )
    },
    "/finance/reports/usage": {
        "get": {
            "summary": "A month's usage report (the bytes `gateway report usage` writes)",
            "security": [{"oauth2": ["gateway:finance"]}, *ADMIN],
            "parameters": [
                _query(
                    "month",
                    {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
                    "The month, YYYY-MM (UTC).",
                    required=True,
                ),
                _query(
                    "format",
                    {"type": "string", "enum": [f.value for f in ReportFormat], "default": "csv"},
                    "csv (the default), json or focus (a FOCUS 1.3 CSV).",
                ),
                _query(
                    "group_by",
                    {"type": "array", "items": {"type": "string", "pattern": _GROUP_KEYS}},
                    "Comma-separated: team, model, provider, subject, client_id, day, cache "
                    "(default team,model; empty: one row for the month); repeated "
                    "(`group_by=team&group_by=model`), all its keys in order.",
                    style="form",
                    explode=True,
                ),
            ],
            "responses": {
                "200": {
                    "description": "The report, as an attachment",
                    "content": {
                        "text/csv": {"schema": _STR},
                        _JSON: {"schema": {"type": "object"}},
                    },
                },
                **_errors(400),
            },
        }
    },
    "/oauth/token": {
        "post": {
            "summary": "Issue an access token (client_credentials, RFC 6749 §4.4)",
            "security": [{}, {"basic": []}],
            "requestBody": _body("TokenRequest", "application/x-www-form-urlencoded"),
            "responses": {
                "200": _answer("An RFC 9068 JWT access token", "Token"),
                "400": _answer("RFC 6749 §5.2 error", "OAuthError"),
                "401": _answer("invalid_client", "OAuthError"),
            },
        }
    },
    "/.well-known/oauth-authorization-server": {
        "get": {
            "summary": "Authorization server metadata (RFC 8414)",
            "security": [],
            "responses": {"200": _answer("Metadata", "ServerMetadata")},
        }
    },
    "/.well-known/jwks.json": {
        "get": {
            "summary": "The public keys that verify the built-in issuer's tokens",
            "security": [],
            "responses": {"200": _answer("JSON Web Key Set", "JWKS")},
        }
    },
}


def openapi_document() -> dict[str, Any]:
    models = [(m, "validation") for m in (PolicyBundle, PolicyPut, TeamPatch, Rollback)]
    _, definitions = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]  # a list of our models is a valid sequence
    schemas: dict[str, Any] = dict(definitions["$defs"])
    # The handler takes any object and validates it as a bundle itself (to list every issue).
    schemas["PolicyPut"]["properties"]["bundle"] = _ref("PolicyBundle")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LLM gateway: admin, finance and OAuth API",
            "version": __version__,
            "description": "Admin endpoints need a token with the gateway:admin scope.",
        },
        "paths": PATHS,
        "components": {
            "schemas": {**schemas, **RESPONSE_SCHEMAS},
            "securitySchemes": {
                "oauth2": {
                    "type": "oauth2",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": "/oauth/token",
                            "scopes": {
                                "gateway:invoke": "Call models",
                                "gateway:admin": "The admin API",
                                "gateway:finance": "Usage reports",
                            },
                        }
                    },
                },
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "client_id:client_secret",
                },
            },
        },
    }


@functools.cache
def _document_bytes(local_port: int | None, admin_port: int | None) -> bytes:
    """The document as the listener on `local_port` serves it (one per listener)."""
    document = openapi_document()
    if admin_port is not None:  # --admin-port: each listener lists only the paths it serves
        document["paths"] = {
            path: operations
            for path, operations in PATHS.items()
            if listener_serves(path, local_port, admin_port)
        }
    return orjson.dumps(document)


async def openapi_json(request: Request) -> Response:
    admin_port = request.state.services.settings.admin_port
    server = request.scope.get("server")
    local_port = server[1] if server and admin_port is not None else None
    response = Response(_document_bytes(local_port, admin_port), media_type=_JSON)
    response.headers["x-request-id"] = request_id_of(request)  # as every answer
    return response


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
