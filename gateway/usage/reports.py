"""Finance's monthly usage report: read the daily rollup, render csv, json or FOCUS bytes.

The one service behind `gateway report usage` and `GET /finance/reports/usage`,
so both give the same bytes. The month is read one UTC day at a time (a progress
step each; the sums are integers, so merging days is exact) inside one read
transaction, so every figure and warning comes from the same snapshot while the
ledger writer keeps adding rows (PostgreSQL: REPEATABLE READ; SQLite: WAL read).
The rollup (`usage_daily`, see rollup.py) is written in the same transactions as
the ledger rows it counts, so that snapshot's sums are the ledger's sums.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.usage.focus import focus_csv, focus_extra_keys
from gateway.usage.provider_types import provider_types
from gateway.usage.report_formats import (
    ReportWarning,
    Summary,
    summary_csv,
    summary_json,
    unknown_price_warnings,
)
from gateway.usage.report_query import (
    ChargeKey,
    ChargeSums,
    Key,
    Sums,
    charge_sums,
    summary_sums,
    unknown_prices,
)
from gateway.usage.report_request import MS_PER_DAY, ReportFormat, ReportRequest

# Told how many steps there are, then once per step done (a progress bar, or nothing).
Progress = Callable[[int], None]

REPORT_WORK_MEM = "64MB"  # PostgreSQL's default 4MB spills a million-row sort to disk
MEDIA_TYPES = {
    ReportFormat.CSV: "text/csv; charset=utf-8",
    ReportFormat.FOCUS: "text/csv; charset=utf-8",
    ReportFormat.JSON: "application/json",
}


@dataclass(frozen=True, slots=True)
class RenderedReport:
    body: bytes
    media_type: str
    filename: str  # what a download is saved as: usage-2026-11.csv, usage-2026-11-focus.csv
    warnings: list[ReportWarning]


def _filename(request: ReportRequest) -> str:
    label = request.month.label
    if request.format is ReportFormat.FOCUS:
        return f"usage-{label}-focus.csv"
    return f"usage-{label}.{request.format.value}"


def _days(request: ReportRequest) -> list[int]:
    """The month's UTC days, as days since the epoch."""
    first = request.month.start_ms // MS_PER_DAY
    return list(range(first, first + request.month.days))


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What one read transaction saw."""

    groups: dict[Key, Sums]
    charges: dict[ChargeKey, ChargeSums]
    warnings: list[ReportWarning]
    provider_types: dict[str, str]  # FOCUS only: {provider key: type}


async def _read(
    conn: AsyncConnection, request: ReportRequest, started: Progress, step: Callable[[], None]
) -> _Snapshot:
    days = _days(request)
    started(len(days) + 1)
    groups: dict[Key, Sums] = {}
    charges: dict[ChargeKey, ChargeSums] = {}
    extra = focus_extra_keys(request.group_by)
    for day in days:
        if request.format is ReportFormat.FOCUS:
            # Keyed by day: no two days share a key, so nothing needs merging.
            charges.update(await charge_sums(conn, day, day + 1, extra))
        else:
            for key, sums in (await summary_sums(conn, day, day + 1, request.group_by)).items():
                groups.setdefault(key, Sums()).add(sums)
        step()
    warnings = unknown_price_warnings(await unknown_prices(conn, days[0], days[-1] + 1))
    types = await provider_types(conn, {k.provider for k in charges if k.provider is not None})
    step()
    return _Snapshot(groups, charges, warnings, types)


def _nothing(*_: object) -> None:
    pass


async def usage_report(
    engine: AsyncEngine,
    request: ReportRequest,
    started: Progress = _nothing,
    step: Callable[[], None] = _nothing,
) -> RenderedReport:
    """The report's bytes; `started(total)` then `step()` per day read report progress."""
    async with engine.connect() as conn:
        is_postgres = engine.dialect.name == "postgresql"
        if is_postgres:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            if is_postgres:  # a month's GROUP BY sorts in memory instead of on disk
                await conn.execute(sa.text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
            read = await _read(conn, request, started, step)
    warnings = read.warnings
    if request.format is ReportFormat.FOCUS:
        extra = focus_extra_keys(request.group_by)
        body = focus_csv(request.month, read.charges, extra, read.provider_types)
    else:
        summary = Summary(request.month, request.group_by, read.groups, warnings)
        render = summary_json if request.format is ReportFormat.JSON else summary_csv
        body = render(summary)
    return RenderedReport(body, MEDIA_TYPES[request.format], _filename(request), warnings)
