"""Finance API (SPEC §5, §6): `GET /finance/reports/usage`, the same bytes as the CLI.

Scope `gateway:finance` or `gateway:admin` (no token → 401, neither scope → 403
insufficient_scope). Parses the query, calls `usage_report` (the CLI calls it
too) and answers its bytes as they are; a bad parameter is a 400
`invalid_request_error` naming it, a repeated `month` or `format` too (a repeated
`group_by` means all its keys, as a repeated `--group-by` does). Warnings are in the
JSON body; for CSV they are counted in `x-gateway-report-warnings` (the CLI prints
them on stderr).
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.edge import requires_scope
from gateway.api.query import check_query, single
from gateway.auth.principal import SCOPE_ADMIN, SCOPE_FINANCE, Principal
from gateway.services import Services
from gateway.usage.report_request import joined_group_by, parse_report_request
from gateway.usage.reports import usage_report

_PARAMETERS = frozenset({"month", "format", "group_by"})


async def _usage_report(request: Request, services: Services, _principal: Principal) -> Response:
    query = request.query_params
    # A misspelt `group_by` must not silently change the report.
    check_query(query, _PARAMETERS, repeatable=("group_by",))
    parsed = parse_report_request(
        single(query, "month"),
        single(query, "format"),
        joined_group_by(query.getlist("group_by")),
        int(time.time() * 1000),
    )
    report = await usage_report(services.engine, parsed)
    return Response(
        report.body,
        media_type=report.media_type,
        headers={
            "content-disposition": f'attachment; filename="{report.filename}"',
            "x-gateway-report-warnings": str(len(report.warnings)),
        },
    )


routes = [
    Route(
        "/finance/reports/usage",
        requires_scope(SCOPE_FINANCE, _usage_report, also=(SCOPE_ADMIN,)),
        methods=["GET"],
    ),
]
