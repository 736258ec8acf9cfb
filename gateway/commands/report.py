"""`gateway report usage`: finance's monthly export (SPEC §6), to stdout or a file.

Parses flags and renders; the report itself is `gateway.usage.reports.usage_report`,
which `GET /finance/reports/usage` calls too (same bytes). A progress bar (rich,
on stderr, gone when done) shows while the ledger is read, only when stderr is a
terminal. `-o FILE` is written atomically (commands/atomic_file.py); `-o -` is
stdout. A bad flag exits 2, an unwritable path, a database error, or a database
that does not exist or is not migrated 1, with one plain line (a report never
creates a database).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from gateway.usage.report_request import ReportRequest
    from gateway.usage.reports import RenderedReport

report_app = typer.Typer(no_args_is_help=True, help="Reports from the usage ledger.")


@contextmanager
def _progress(shown: bool) -> Iterator[tuple[Callable[[int], None], Callable[[], None]]]:
    """(started(total), step()) driving a transient rich bar on stderr, or no-ops."""
    if not shown:
        yield (lambda _total: None), (lambda: None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("reading the ledger"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("ledger", total=None)
    with bar:
        yield (
            (lambda total: bar.update(task, total=total)),
            (lambda: bar.advance(task)),
        )


def _render(request: ReportRequest, show_progress: bool) -> RenderedReport:
    from gateway.commands.existing_db import (
        DatabaseNotReady,
        database_failure,
        require_migrated,
    )
    from gateway.db import create_engine
    from gateway.settings import load_settings
    from gateway.usage.reports import usage_report

    settings = load_settings()

    async def main() -> RenderedReport:
        await require_migrated(settings.database_url)  # read-only: never creates one
        engine = create_engine(settings.database_url)
        try:
            with _progress(show_progress) as (started, step):
                return await usage_report(engine, request, started, step)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except DatabaseNotReady as missing:
        typer.echo(f"error: {missing}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # driver errors vary; the operator needs the kind and the text
        typer.echo(f"error: {database_failure(settings.database_url, exc)}", err=True)
        raise typer.Exit(1) from None


@report_app.command()
def usage(
    # Lists, so a repeated flag is refused (as the API's repeated parameter is), not
    # silently the last one: a script that appends flags would export the wrong month.
    month: Annotated[
        list[str], typer.Option(metavar="YYYY-MM", help="The UTC calendar month, YYYY-MM.")
    ],
    format: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="csv, json, or focus (FinOps FOCUS 1.3 CSV). Default: csv.",
        ),
    ] = None,
    group_by: Annotated[
        list[str] | None,
        typer.Option(
            "--group-by",
            help="Comma-separated, or repeated: team, model, provider, subject, client_id, "
            "day, cache. Default: team,model.",
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Write here (atomically); '-' is stdout, the default."),
    ] = None,
) -> None:
    """The month's usage per group: requests, errors, tokens, exact cost in USD."""
    from gateway.commands.atomic_file import (
        AtomicFile,
        OutputNotWritable,
        OutputPathInvalid,
        output_path,
    )
    from gateway.errors import InvalidRequest
    from gateway.usage.report_request import joined_group_by, parse_report_request

    for flag, given in (("--month", month), ("--format", format or [])):
        if len(given) > 1:
            typer.echo(f"error: {flag} is given {len(given)} times: give it once", err=True)
            raise typer.Exit(2)
    try:
        request = parse_report_request(
            month[0],
            (format or ["csv"])[0],
            joined_group_by(group_by or []),
            int(time.time() * 1000),
        )
    except InvalidRequest as bad:
        typer.echo(f"error: {bad.message}", err=True)
        raise typer.Exit(2) from None
    try:  # a usage error, before the ledger is read
        target_path = None if output in (None, "-") else output_path(output)
    except OutputPathInvalid as invalid:
        typer.echo(f"error: {invalid}", err=True)
        raise typer.Exit(2) from None
    show_progress = sys.stderr.isatty()
    if target_path is None:  # '-' is stdout, as other CLIs read it
        report = _render(request, show_progress)
        sys.stdout.buffer.write(report.body)
        sys.stdout.buffer.flush()
    else:
        try:
            with AtomicFile(target_path) as target:  # fails here, before the ledger is read
                report = _render(request, show_progress)
                target.commit(report.body)
        except OutputNotWritable as unwritable:
            typer.echo(f"error: {unwritable}", err=True)
            raise typer.Exit(1) from None
    for warning in report.warnings:
        typer.echo(f"warning: {warning.message}", err=True)
