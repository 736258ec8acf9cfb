"""`gateway policy …`: check, diff, apply, export, history, rollback, schema.

Parses flags and renders; every change goes through `PolicyService` (the
admin API calls it too), against the database in GATEWAY_DATABASE_URL, which
each command that writes migrates first (a no-op when current), like `gateway
token`; `diff`, `export` and `history` only read: never create or migrate one.
Like `kubectl apply`, `apply` does not prompt; `diff` is its preview, like
`terraform plan`. An error an operator can fix is printed plainly, exit 1.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from gateway.commands.cli_author import cli_author
from gateway.commands.operator_env import OperatorEnvironment
from gateway.one_line import one_line
from gateway.policy.errors import PolicyInvalid

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from gateway.policy.compiled import Policy
    from gateway.policy.service import Applied, PolicyService
    from gateway.policy.versions import PolicyVersion

T = TypeVar("T")

policy_app = typer.Typer(
    no_args_is_help=True,
    help="Check, preview, apply, export and roll back policy versions.",
)

Directory = Annotated[Path, typer.Argument(help="Policy bundle folder.")]


def _bounded_reason(reason: str) -> str:
    """Refuse a --reason the service would refuse, before any database work (exit 2)."""
    from gateway.policy.service import MAX_REASON_CHARS

    if len(reason) > MAX_REASON_CHARS:
        raise typer.BadParameter(f"at most {MAX_REASON_CHARS} characters (got {len(reason)})")
    return reason


Reason = Annotated[
    str,
    typer.Option(
        help="Why: kept with the version and in the audit log (at most 1000 characters).",
        callback=_bounded_reason,
    ),
]


def count(number: int, noun: str) -> str:
    """'1 error', '3 errors'."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _print_invalid(invalid: PolicyInvalid, what: str) -> typer.Exit:
    for issue in invalid.issues:
        typer.echo(f"error: {issue}", err=True)
    typer.echo(f"{what} is invalid ({count(len(invalid.issues), 'error')})", err=True)
    return typer.Exit(1)


def check_or_exit(directory: Path, env: Mapping[str, str] = os.environ) -> Policy:
    """Validate a folder (schema + compile with `env`: a server's own, strict, by
    default); exit 1 listing every error."""
    from gateway.policy.store import load_policy_dir

    try:
        return load_policy_dir(directory, env)
    except PolicyInvalid as invalid:
        raise _print_invalid(invalid, f"policy bundle {directory}") from None


def _run(work: Callable[[PolicyService], Awaitable[T]], *, read_only: bool = False) -> T:
    """Migrate the database (one that exists: a missing one is exit 1), run `work` on the
    policy service, close.

    `read_only`: no migration; a database that does not exist or is not migrated is
    an error (exit 1), not a new empty one (commands/existing_db.py).

    Refusals an operator can act on (invalid, conflict, unknown version) are
    printed with exit 1; a driver's error becomes one plain line, exit 1.
    """
    from gateway.commands.atomic_file import OutputNotWritable
    from gateway.commands.existing_db import (
        DatabaseNotReady,
        database_failure,
        require_existing,
        require_migrated,
    )
    from gateway.db import create_engine, migrate
    from gateway.errors import GatewayError
    from gateway.policy.service import PolicyService
    from gateway.settings import load_settings

    settings = load_settings()
    values = dict(os.environ)
    env = OperatorEnvironment(values)

    async def main() -> T:
        if read_only:
            await require_migrated(settings.database_url)
        else:
            require_existing(settings.database_url)  # only `migrate` and `serve` create one
            await migrate(settings.database_url)
        engine = create_engine(settings.database_url)
        try:
            # The issuer this database's gateway signs with, as `gateway token` mints for:
            # an `auth.issuers` entry naming it is refused here as `serve` would.
            if "GATEWAY_ISSUER_URL" not in values:
                served = await _served_issuer_url(engine)
                if served is not None:
                    values["GATEWAY_ISSUER_URL"] = served
            # And where it listens: an api_base there is refused here as `serve` refuses it
            # (this shell's GATEWAY_PORT, or its default 8080, says nothing of that server).
            values.update(await _served_listener(engine))
            return await work(PolicyService(engine, env))
        finally:
            await engine.dispose()

    try:
        done = asyncio.run(main())
        env.warn_unset()
        return done
    except PolicyInvalid as invalid:
        raise _print_invalid(invalid, "the policy") from None
    except GatewayError as refused:  # PolicyConflict, VersionNotFound, unknown team
        typer.echo(f"error: {refused.message}", err=True)
        raise typer.Exit(1) from None
    except (FileExistsError, DatabaseNotReady, OutputNotWritable) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # driver errors vary; the operator needs the kind and the text
        typer.echo(f"error: {database_failure(settings.database_url, exc)}", err=True)
        raise typer.Exit(1) from None


async def _served_listener(engine: AsyncEngine) -> dict[str, str]:
    """The host and port settings the last `serve` on this database recorded ({} if none)."""
    from gateway.auth.issuer_record import served_listener

    try:
        return await served_listener(engine)
    except Exception:  # a database no serve has migrated: nothing recorded
        return {}


async def _served_issuer_url(engine: AsyncEngine) -> str | None:
    """The issuer URL the last `serve` on this database recorded; None if none did."""
    from gateway.auth.issuer_record import served_issuer

    try:
        served = await served_issuer(engine)
    except Exception:  # a database no serve has migrated: nothing recorded
        return None
    return None if served is None else served.issuer_url


def running_version_or_exit(database_url: str) -> int | None:
    """`gateway serve`'s one look at the database: the running version's number, None
    when there is none (or no table yet: `--no-migrate` on a new database). The running
    version must compile here (every `${VAR}` it names set in this environment, every
    value within this gateway's schema), else the server would fail at start-up with a
    traceback: exit 1 listing every error and what to do."""
    from gateway.db import create_engine
    from gateway.policy.service import PolicyService

    async def main() -> PolicyVersion | None:
        engine = create_engine(database_url)
        try:
            service = PolicyService(engine, os.environ)
            try:
                running = await service.current()
            except Exception:  # no table yet: nothing runs
                return None
            if running is not None:
                try:
                    await service.compile(running)
                except PolicyInvalid as invalid:
                    _print_invalid(invalid, f"policy version {running.version}")
                    typer.echo(
                        "cannot serve it: set the variables it names, or apply a corrected "
                        "bundle (`gateway policy apply DIR`, or `gateway policy rollback N`) "
                        "first",
                        err=True,
                    )
                    raise typer.Exit(1) from None
            return running
        finally:
            await engine.dispose()

    running = asyncio.run(main())
    return None if running is None else running.version


def print_warnings(warnings: Iterable[str]) -> None:
    """`policy check`'s warnings (advice.py), one `warning: ...` line each on stderr: every
    command that previews or changes the policy prints them."""
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)


@policy_app.command("check")
def check(directory: Directory) -> None:
    """Validate a policy bundle; every error names file, line and field."""
    from gateway.policy.advice import policy_warnings

    env = OperatorEnvironment()  # a key this shell lacks: a warning (operator_env.py)
    policy = check_or_exit(directory, env)
    env.warn_unset()
    print_warnings(policy_warnings(policy))
    typer.echo(f"policy bundle {directory} is valid")


@policy_app.command("diff")
def diff(
    directory: Directory,
    exit_code: Annotated[
        bool,
        typer.Option(
            "--exit-code",
            help="Exit 1 when there are changes, 0 when there are none (as `git diff "
            "--exit-code`), so CI can detect drift.",
        ),
    ] = False,
) -> None:
    """Preview `apply DIR`: the unified diff from the running version, or "no changes"."""
    plan = _run(lambda service: service.plan_folder(directory), read_only=True)
    print_warnings(plan.warnings)
    if not plan.diff:
        running = plan.running.version if plan.running else None
        typer.echo(f"no changes: {directory} equals the running version {running}")
        return
    typer.echo(plan.diff, nl=False)
    if plan.conflict is not None:
        typer.echo(f"note: `apply` would refuse it. {plan.conflict.message}", err=True)
    if exit_code:
        raise typer.Exit(1)


Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Apply even over an admin-API change or rollback the folder has not seen.",
    ),
]


@policy_app.command("apply")
def apply(directory: Directory, reason: Reason = "", force: Force = False) -> None:
    """Make the folder the running policy (a new version), without prompting.

    Refused, with how to resolve it, when the running version holds an
    admin-API change or a rollback that the folder has not seen (it was not
    exported or applied since); --force applies it anyway.
    """

    async def apply_and_diff(service: PolicyService) -> tuple[Applied, str]:
        applied = await service.apply_folder(
            directory, author=cli_author(), reason=reason, force=force
        )
        if not applied.is_new:
            return applied, ""
        return applied, await service.diff(applied.previous, applied.version.version)

    applied, diff = _run(apply_and_diff)
    print_warnings(applied.warnings)
    typer.echo(diff, nl=False)
    if applied.is_new:
        was = f"was {applied.previous}" if applied.previous else "the first version"
        typer.echo(f"applied {directory} as policy version {applied.version.version} ({was})")
        if "${" in json.dumps(applied.version.bundle):
            typer.echo(
                "each gateway resolves ${VAR}s from its own environment; "
                "GET /admin/policy shows newest_problem if one cannot enforce this version",
                err=True,
            )
    else:
        typer.echo(f"no changes: {directory} equals the running version {applied.version.version}")


@policy_app.command("export")
def export(
    directory: Directory,
    version: Annotated[
        int | None, typer.Option(help="Version to export (default: the running one).")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace policy files that no export wrote, or that were edited since.",
        ),
    ] = False,
) -> None:
    """Write a version as YAML files, one per section (a section past a file's limits in
    several: teams.yaml, teams-2.yaml, ...), with a marker of the version.

    Refused, without --force, when the folder holds files no export wrote or
    edits not yet applied (preview those with `policy diff DIR`).
    """
    from gateway.commands.atomic_file import OutputNotWritable

    async def write(service: PolicyService) -> PolicyVersion:
        try:
            return await service.export(directory, version=version, force=force)
        except OSError as error:
            if error.filename is None:
                raise  # a socket's error: the database, reported as such
            raise OutputNotWritable(
                f"cannot write {error.filename}: {error.strerror or error}"
            ) from None

    exported = _run(write, read_only=True)
    typer.echo(f"exported policy version {exported.version} to {directory}")


@policy_app.command("history")
def history(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="How many versions.")] = 100,
) -> None:
    """Policy versions, newest (running) first."""
    versions = _run(lambda service: service.history(limit), read_only=True)
    if as_json:
        typer.echo(json.dumps([v.summary() for v in versions], indent=2))
        return
    rows = [
        [
            str(v.version),
            v.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            one_line(v.author),
            v.hash[:12],
            one_line(v.reason) or "-",
        ]
        for v in versions
    ]
    headers = ["VERSION", "CREATED", "AUTHOR", "HASH", "REASON"]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


@policy_app.command("rollback")
def rollback(
    version: Annotated[int, typer.Argument(help="The version to go back to.")],
    reason: Reason = "",
) -> None:
    """Make a new version equal to VERSION (history is kept)."""
    applied = _run(lambda service: service.rollback(version, author=cli_author(), reason=reason))
    print_warnings(applied.warnings)
    if applied.is_new:
        typer.echo(
            f"rolled back to version {version}: policy version {applied.version.version} "
            f"(was {applied.previous})"
        )
    else:
        typer.echo(f"no changes: the running version {applied.version.version} equals {version}")


@policy_app.command("schema")
def schema(
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Write here instead of stdout: a file, or a folder to write "
            "policy.schema.json in; '-' is stdout.",
        ),
    ] = None,
) -> None:
    """Print the policy bundle's JSON Schema (for editors); -o writes it to a file, or as
    policy.schema.json into a folder."""
    from gateway.commands.atomic_file import (
        AtomicFile,
        OutputNotWritable,
        OutputPathInvalid,
        output_path,
    )
    from gateway.policy.json_schema import SCHEMA_FILE_NAME, render_json_schema

    text = render_json_schema()
    if output is None or output == "-":  # '-' is stdout, as for `report usage -o`
        typer.echo(text, nl=False)
        return
    try:
        target_path = output_path(output, SCHEMA_FILE_NAME)
    except OutputPathInvalid as invalid:
        typer.echo(f"error: {invalid}", err=True)
        raise typer.Exit(2) from None
    try:
        with AtomicFile(target_path) as target:
            target.commit(text.encode())
    except OutputNotWritable as unwritable:
        typer.echo(f"error: {unwritable}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {target_path}", err=True)
