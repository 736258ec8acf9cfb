"""The `gateway` command: serve, migrate, token; `policy`, `clients`, `keys`, `report` groups.

The CLI parses flags and renders results; it holds no policy logic. Errors an
operator can fix (a bad policy, an unreachable database) are printed plainly
with a non-zero exit, never as a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.commands.auth import (
    clients_app,
    keys_app,
    mint_token,
    record_issuer,
    refuse_unmintable,
    warn_unknown_team,
)
from gateway.commands.cache import cache_app  # response cache (issue 14)
from gateway.commands.policy import (
    check_or_exit,
    policy_app,
    running_version_or_exit,
)
from gateway.commands.report import report_app
from gateway.commands.usage import usage
from gateway.settings import Settings, load_settings, sqlite_folder_problem

if TYPE_CHECKING:
    from gateway.db import Migrated

app = typer.Typer(no_args_is_help=True, add_completion=False, help="An LLM gateway.")
app.add_typer(policy_app, name="policy")
app.add_typer(clients_app, name="clients")
app.add_typer(keys_app, name="keys")
app.add_typer(report_app, name="report")
app.add_typer(cache_app, name="cache")  # response cache (issue 14)
app.command("usage")(usage)  # issue 9: a team's budgets and limits now


def _fail(message: str, code: int = 1) -> typer.Exit:
    """One `error: ` line on stderr, as every refusal of the CLI is printed; the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _sqlite_folder_or_exit(settings: Settings) -> None:
    problem = sqlite_folder_problem(settings.database_url)
    if problem is not None:
        raise _fail(problem, 2)


def _migrate_or_exit(settings: Settings) -> Migrated:
    from gateway.commands.existing_db import connection_problem
    from gateway.db import SchemaFromNewerGateway, check_schema, migrate

    _sqlite_folder_or_exit(settings)
    try:
        return asyncio.run(migrate(settings.database_url))
    except Exception as exc:  # driver errors vary; the operator needs the kind and the text
        problem = connection_problem(settings.database_url, exc)
        if problem is not None:  # not in: asking for the schema would fail (and wait) again
            raise _fail(problem) from None
        try:  # a database migrated by a newer gateway deserves a plainer answer
            asyncio.run(check_schema(settings.database_url))
        except SchemaFromNewerGateway as newer:
            raise _fail(f"cannot migrate: {newer}") from None
        except Exception:
            pass  # the migration's own error says more
        raise _fail(f"cannot migrate the database: {type(exc).__name__}: {exc}") from None


def _schema_current_or_exit(settings: Settings) -> None:
    from gateway.commands.existing_db import DatabaseNotReady, connection_problem, require_existing
    from gateway.db import SchemaNotCurrent, check_schema

    _sqlite_folder_or_exit(settings)
    try:
        require_existing(settings.database_url)  # connecting would create the SQLite file
    except DatabaseNotReady as missing:
        raise _fail(
            "cannot serve without migrating: the database has no schema yet: run "
            f"`gateway migrate` ({missing})"
        ) from None
    try:
        asyncio.run(check_schema(settings.database_url))
    except SchemaNotCurrent as problem:
        raise _fail(f"cannot serve without migrating: {problem}") from None
    except Exception as exc:
        unreachable = connection_problem(settings.database_url, exc)
        if unreachable is not None:
            raise _fail(unreachable) from None
        raise _fail(f"cannot open the database: {type(exc).__name__}: {exc}") from None


def _spool_folder_or_exit(settings: Settings) -> None:
    """The ledger's spool must be writable before the first outage needs it: rows kept
    while the database is down are flushed there at a shutdown (SPEC §6). A folder set
    in GATEWAY_LEDGER_SPOOL_DIR must exist (a PostgreSQL database's own subfolder in it
    is made); the default one, beside the SQLite file or ./ledger-spool/, is made."""
    from gateway.usage.spool import default_spool_dir

    configured = settings.ledger_spool_dir
    if configured is not None and not Path(configured).is_dir():
        # Set, it names a volume the operator mounted: never a folder made up on a typo.
        raise _fail(f"GATEWAY_LEDGER_SPOOL_DIR: the folder {configured}/ does not exist", 2)
    folder = default_spool_dir(settings.database_url, configured)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        problem = f"cannot create {folder}/ ({error.strerror})"
    else:
        if os.access(folder, os.W_OK | os.X_OK):
            return
        problem = f"cannot write a file in {folder}/"
    raise _fail(f"the ledger's spool folder: {problem}; set GATEWAY_LEDGER_SPOOL_DIR", 2)


def _export_settings(settings: Settings) -> None:
    """Hand the resolved settings to uvicorn's workers, which read the environment."""
    os.environ.update(
        {
            "GATEWAY_DATABASE_URL": settings.database_url,
            "GATEWAY_POLICY_DIR": str(settings.policy_dir),
            "GATEWAY_HOST": settings.host,
            "GATEWAY_PORT": str(settings.port),
            "GATEWAY_WORKERS": str(settings.workers),
            "GATEWAY_MIGRATE_ON_START": "false",  # done once, here, before workers start
        }
    )
    if settings.redis_url:
        os.environ["GATEWAY_REDIS_URL"] = settings.redis_url
    if settings.admin_port is not None:  # the app splits the planes by the port (api/planes.py)
        os.environ["GATEWAY_ADMIN_PORT"] = str(settings.admin_port)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    policies: Annotated[Path | None, typer.Option(help="Policy bundle folder.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes.")] = None,
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="Skip migrations.")] = False,
    admin_port: Annotated[
        int | None,
        typer.Option(help="Serve /admin and /finance only on this port, not on --port."),
    ] = None,
) -> None:
    """Run the gateway."""
    # SIGHUP (logrotate's postrotate) reopens the access log once the app runs; until then
    # (and after it stops) ignored: its default action ended a server still starting,
    # its port already open, with nothing logged. Workers inherit the ignore.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Read before _export_settings sets it: a folder someone named must exist.
    is_named = policies is not None or bool(os.environ.get("GATEWAY_POLICY_DIR"))
    settings = load_settings().with_overrides(
        host=host, port=port, policy_dir=policies, workers=workers, admin_port=admin_port
    )
    # A server's stderr is JSON lines (SPEC §7) from its first line, these start-up notes
    # included; a refusal to start stays one plain line, like every one-shot command's.
    from gateway.logs import configure_logging
    from gateway.policy.loader import missing_folder

    configure_logging(settings.log_level)
    log = logging.getLogger("gateway.serve")
    if settings.workers > 1 and not settings.redis_url:
        raise _fail(
            f"--workers {settings.workers} needs GATEWAY_REDIS_URL: without Redis each worker "
            f"keeps its own counters, which would multiply every limit by {settings.workers}.",
            2,
        )
    if settings.access_log not in ("stderr", "off"):
        folder = Path(settings.access_log).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise _fail(f"GATEWAY_ACCESS_LOG: cannot write a file in {folder}/", 2)
        if Path(settings.access_log).is_dir():
            raise _fail(f"GATEWAY_ACCESS_LOG: {settings.access_log} is a folder, not a file", 2)
    if is_named and not settings.policy_dir.is_dir() and settings.policy_dir != Path("policies"):
        # Refused whatever the database holds (below), so before anything is made: a new
        # database was created and migrated first (probe p7).
        raise _fail(f"{settings.policy_dir}: {missing_folder(settings.policy_dir)}", 1)
    from gateway.server import bind_listeners, local_url, run_server

    _sqlite_folder_or_exit(settings)  # before the spool: it may live beside the file
    # Before anything is written (the spool folder, the database, the issuer it serves
    # as): a host that does not resolve or a port in use stops here (SettingsError).
    sockets = bind_listeners(settings)
    # `--port 0` (or an admin port 0: none) binds a free port: the issuer it derives, the
    # workers and what the database records name that port, not 0.
    ports = [sock.getsockname()[1] for sock in sockets]  # the teams', then the admin one
    if settings.port != ports[0]:
        settings = settings.with_overrides(port=ports[0])
    if settings.migrate_on_start and not no_migrate:
        _spool_folder_or_exit(settings)  # before the migration writes anything
        _migrate_or_exit(settings)
    else:
        _schema_current_or_exit(settings)  # writes nothing: a refusal leaves nothing made
        _spool_folder_or_exit(settings)
    # Before the policy check: it refuses an api_base at our own host:port, so it must
    # see the --host/--port this server listens on, not the environment's defaults.
    _export_settings(settings)
    running = running_version_or_exit(settings.database_url)
    if running is not None and is_named and not settings.policy_dir.is_dir():
        # Refused as on a new database: a mis-mounted folder would leave this replica on
        # the database's version forever, its edits never applied. The default
        # ./policies, named by nobody, may be absent (edits then come from elsewhere).
        raise _fail(f"{settings.policy_dir}: {missing_folder(settings.policy_dir)}", 1)
    if running is None:
        # A new database: the folder becomes version 1, so it must exist and be valid.
        if not settings.policy_dir.exists() and settings.policy_dir == Path("policies"):
            from gateway.policy.example import write_example

            write_example(settings.policy_dir)
            log.info(
                f"wrote the example policy bundle to ./{settings.policy_dir}/",
                extra={"fields": {"policy_dir": str(settings.policy_dir)}},
            )
        check_or_exit(settings.policy_dir)
    else:
        log.info(
            f"enforcing policy version {running} from the database; "
            f"edits of {settings.policy_dir} are applied as new versions",
            extra={"fields": {"policy_version": running, "policy_dir": str(settings.policy_dir)}},
        )
    # `gateway token` elsewhere mints for this issuer; `gateway usage` asks this address;
    # `gateway policy apply` refuses an api_base at this listener, as this server does.
    names = ("GATEWAY_PORT", "GATEWAY_ADMIN_PORT")
    listener = {"GATEWAY_HOST": settings.host} | {
        n: str(p) for n, p in zip(names, ports, strict=False)
    }
    record_issuer(settings, admin_url=local_url(sockets[-1]), warn=log.warning, listener=listener)
    status = run_server(settings, sockets)
    if status:
        raise typer.Exit(status)


@app.command()
def migrate() -> None:
    """Bring the database to the newest schema revision."""
    settings = load_settings()
    done = _migrate_or_exit(settings)
    if not done.changed:
        typer.echo(f"database is already at the newest revision ({done.after})")
    elif done.before is None:
        typer.echo(f"migrated the new database to revision {done.after} (the newest)")
    else:
        typer.echo(
            f"migrated the database from revision {done.before} to {done.after} (the newest)"
        )


@app.command()
def token(
    team: Annotated[str, typer.Option(help="The team the token acts for.")],
    subject: Annotated[str, typer.Option(help="Token subject (`sub`).")] = "gateway-cli",
    scope: Annotated[
        list[str] | None, typer.Option(help="Scope to grant; repeat for more.")
    ] = None,
    ttl: Annotated[
        int | None,
        typer.Option(min=1, help="Lifetime in seconds; at most GATEWAY_TOKEN_TTL_S (default)."),
    ] = None,
) -> None:
    """Mint an access token with the local signing key; printed alone on the last line."""
    from gateway.auth.clients import InvalidClientSpec, checked_scopes

    try:  # as `clients create` does: a typo'd scope would mint a token that grants nothing
        scopes = checked_scopes(scope or ["gateway:invoke"])
    except InvalidClientSpec as invalid:
        raise _fail(str(invalid), code=2) from None
    settings = load_settings()
    if ttl is None:
        ttl = settings.token_ttl_s
    elif ttl > settings.token_ttl_s:
        # A rotated key verifies only that long after rotation (leak containment).
        raise _fail(
            f"--ttl {ttl} is longer than GATEWAY_TOKEN_TTL_S ({settings.token_ttl_s} s); "
            "raise GATEWAY_TOKEN_TTL_S for the gateway and this command to mint longer tokens.",
            code=2,
        )
    refuse_unmintable(team, subject)  # before the database: bad input costs no migration
    _migrate_or_exit(settings)
    warn_unknown_team(
        team, scopes, "inference calls with this token (gateway:invoke) will be refused until it is"
    )
    # the server's issuer and audience, whatever this shell's port
    typer.echo(mint_token(settings, team, subject, scopes, ttl))


def _usage_error_lines(error: typer.TyperException) -> list[str]:
    """A flag or argument the parser refused, worded like every other CLI error: its
    `error: ` line first, then the command's usage and where its help is."""
    if type(error).__name__ == "NoArgsIsHelpError":  # a bare group: its help is printed
        return []
    lines = [f"error: {error.format_message()}"]
    ctx: Any = getattr(error, "ctx", None)  # the parser's context, when it had one
    if ctx is not None:
        lines.append(ctx.get_usage())
        if ctx.command.get_help_option(ctx) is not None:
            lines.append(f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.")
    return lines


# A write to standard output that failed: a full disk, a closed pipe or descriptor.
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EPIPE, errno.EBADF, errno.EIO})


def main() -> None:
    from gateway.logs import configure_cli_logging
    from gateway.settings import SettingsError

    configure_cli_logging()  # `serve` replaces it with its JSON lines
    if sys.stdout is None and sys.argv[1:2] != ["serve"]:
        # Closed (`>&-`): what the command prints (a token, a client's secret) would be
        # lost, and it would exit 0 all the same (probe p21). Nothing is done.
        typer.echo("error: cannot write the output: standard output is closed", err=True)
        sys.exit(1)
    try:
        # Not standalone: click's errors reach us, to be printed as `error: ` lines.
        status = app(standalone_mode=False)
        if sys.stdout is not None:
            sys.stdout.flush()  # a full disk or a closed pipe shows here, not at exit
    except OSError as error:
        if error.errno not in _OUTPUT_ERRNOS:
            raise
        typer.echo(f"error: cannot write the output: {error.strerror}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except SettingsError as error:  # a setting the operator fixes: one plain line
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except typer.TyperException as error:  # a bad flag or argument: exit 2, as click's
        for line in _usage_error_lines(error):
            typer.echo(line, err=True)
        sys.exit(error.exit_code)
    except typer.Abort:  # EOF at a prompt
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)
