"""`gateway clients …`, `gateway keys …`, and the issuer `serve` and `token` agree on.

Parses flags and renders; the work is `ClientRegistry` (the admin API calls
it too) and `SigningKeyStore`. Each command that writes migrates the database
first (a no-op when current), like `gateway token`; the `list` commands never
create or migrate one. Heavy imports stay inside the commands so `gateway --help`
stays fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from gateway.auth.principal import SCOPE_INVOKE
from gateway.commands.cli_author import cli_author
from gateway.one_line import control_character_problem, one_line

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from gateway.auth.clients import ClientRecord
    from gateway.auth.issuer_record import ServedIssuer
    from gateway.auth.keys import SigningKey
    from gateway.settings import Settings

T = TypeVar("T")

clients_app = typer.Typer(no_args_is_help=True, help="OAuth clients of the built-in issuer.")
keys_app = typer.Typer(no_args_is_help=True, help="The built-in issuer's signing keys.")


def _run(
    work: Callable[[AsyncEngine], Awaitable[T]],
    expected: tuple[type[Exception], ...] = (),
    *,
    read_only: bool = False,
) -> T:
    """Migrate the database (one that exists: a missing one is exit 1), run `work`, close.

    Exceptions of the `expected` types reach the caller; any other (a driver's)
    becomes a plain message and exit 1. `read_only`: no migration; a database that
    does not exist or is not migrated is an error (commands/existing_db.py).
    """
    from gateway.commands.existing_db import (
        DatabaseNotReady,
        database_failure,
        require_existing,
        require_migrated,
    )
    from gateway.db import create_engine, migrate
    from gateway.settings import load_settings

    settings = load_settings()

    async def main() -> T:
        if read_only:
            await require_migrated(settings.database_url)
        else:
            require_existing(settings.database_url)  # only `migrate` and `serve` create one
            await migrate(settings.database_url)
        engine = create_engine(settings.database_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except expected:
        raise
    except DatabaseNotReady as missing:
        typer.echo(f"error: {missing}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # driver errors vary; the operator needs the kind and the text
        typer.echo(f"error: {database_failure(settings.database_url, exc)}", err=True)
        raise typer.Exit(1) from None


def _warn_on_stderr(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def record_issuer(
    settings: Settings,
    admin_url: str | None = None,
    warn: Callable[[str], object] = _warn_on_stderr,
    listener: Mapping[str, str] | None = None,
) -> None:
    """`serve`: store the issuer URL and audience it runs with, for `gateway token` to read,
    where it answers /admin on this host (`admin_url`), for `gateway usage`, and where it
    listens (`listener`: its host and port settings), for the policy commands.

    Warns (through `warn`: serve's JSON log) when the database was last served under
    another issuer: replicas that share a database must share one issuer
    (GATEWAY_ISSUER_URL), or each refuses the others' tokens.
    """
    from gateway.auth.issuer_record import ServedIssuer, record_served_issuer, served_issuer
    from gateway.db import create_engine

    ours = ServedIssuer(settings.issuer_url, settings.audience)

    async def main() -> ServedIssuer | None:
        engine = create_engine(settings.database_url)
        try:
            before = await served_issuer(engine)
            await record_served_issuer(engine, ours, admin_url, listener)
            return before
        finally:
            await engine.dispose()

    before = asyncio.run(main())
    if before is not None and before.issuer_url != ours.issuer_url:
        warn(
            f"this database was last served with issuer {before.issuer_url}, now "
            f"{ours.issuer_url}. Tokens minted for the other verify here only while neither "
            "issuer is set explicitly; replicas sharing a database behind one address need "
            "one GATEWAY_ISSUER_URL (the URL clients use)."
        )


def minting_issuer(settings: Settings) -> ServedIssuer:
    """`token`: the issuer and audience to mint with.

    What `serve` recorded, so the token works whatever this shell's GATEWAY_PORT
    or GATEWAY_HOST; an explicit GATEWAY_ISSUER_URL wins (with a warning when it
    differs from the server's, since the server will refuse the token).
    """
    from gateway.auth.issuer_record import ServedIssuer, served_issuer
    from gateway.db import create_engine

    async def recorded() -> ServedIssuer | None:
        engine = create_engine(settings.database_url)
        try:
            return await served_issuer(engine)
        finally:
            await engine.dispose()

    served = asyncio.run(recorded())
    own = ServedIssuer(settings.issuer_url, settings.audience)
    if served is None:
        return own
    if settings.issuer_url_is_explicit:
        if served.issuer_url != own.issuer_url:
            typer.echo(
                f"warning: GATEWAY_ISSUER_URL is {own.issuer_url} but the server last started "
                f"with {served.issuer_url}; it will refuse this token (iss claim)",
                err=True,
            )
        return own
    return ServedIssuer(
        served.issuer_url, own.audience if "GATEWAY_AUDIENCE" in os.environ else served.audience
    )


def mint_token(
    settings: Settings, team: str, subject: str, scopes: Sequence[str], ttl_s: int
) -> str:
    """A token signed with the local key for the issuer and audience the server checks
    (minting_issuer): what `gateway token` prints, and what `gateway usage` asks with.

    A team no policy can name, or an empty subject, exits 2: the gateway would refuse
    such a token (the subject with 401), so printing one would only mislead."""
    from gateway.auth.access_tokens import mint_with_current_key

    refuse_unmintable(team, subject)
    served = minting_issuer(settings)
    return asyncio.run(
        mint_with_current_key(
            settings.database_url,
            issuer=served.issuer_url,
            audience=served.audience,
            team=team,
            subject=subject,
            client_id="gateway-cli",
            scopes=scopes,
            ttl_s=ttl_s,
            now=time.time(),
        )
    )


def refuse_unmintable(team: str, subject: str) -> None:
    """Exit 2 for a token the gateway would refuse whatever its policy: a team no policy
    can name, or an empty subject (401). Cheap: `gateway token` checks it first."""
    refuse_impossible_team(team)
    if not subject:
        typer.echo(
            "error: --subject must not be empty: the gateway refuses a token without a "
            "subject (sub claim)",
            err=True,
        )
        raise typer.Exit(2)


def refuse_impossible_team(team: str) -> None:
    """Exit 2 when no policy can have a team named `team` (the schema's team-name rule)."""
    from gateway.policy.names import team_name_problem

    problem = team_name_problem(team)
    if problem is not None:
        typer.echo(f"error: team {team!r} can never be a team: {problem}", err=True)
        raise typer.Exit(2)


def warn_unknown_team(team: str, scopes: Iterable[str], consequence: str) -> None:
    """Warn when `team` is not in the running policy version and `scopes` hold
    gateway:invoke, the one scope bound to a team (admin and finance calls do not read
    it); exit 2 when no policy can have it (`refuse_impossible_team`), since no edit of
    the policy would make it work.

    The running version is the database's newest; before the first `serve`
    there is none, and the policy folder is what will become version 1.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.commands.existing_db import DatabaseNotReady, require_existing
    from gateway.db import create_engine
    from gateway.policy.errors import PolicyInvalid
    from gateway.policy.service import PolicyService
    from gateway.policy.store import load_policy_dir
    from gateway.settings import load_settings

    refuse_impossible_team(team.strip())  # `clients create` strips it
    if SCOPE_INVOKE not in scopes:
        return
    settings = load_settings()

    async def running_teams() -> tuple[set[str], str] | None:
        engine = create_engine(settings.database_url)
        try:
            running = await PolicyService(engine, os.environ).current()
        finally:
            await engine.dispose()
        if running is None:
            return None
        return set(running.bundle.get("teams") or {}), f"running policy version {running.version}"

    try:
        require_existing(settings.database_url)  # connecting would create it
        found = asyncio.run(running_teams())
        if found is None:
            teams = set(load_policy_dir(settings.policy_dir, os.environ).teams)
            found = teams, f"policy at {settings.policy_dir}"
    except (PolicyInvalid, OSError, SQLAlchemyError, DatabaseNotReady):
        return  # nothing to compare with (no policy, no database or not migrated yet)
    teams, where = found
    if team not in teams:
        typer.echo(f"warning: team {team!r} is not in the {where}; {consequence}", err=True)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@clients_app.command("create")
def clients_create(
    team: Annotated[str, typer.Option(help="The team the client's tokens act for.")],
    name: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="Scope the client may request; repeat for more. Default gateway:invoke."),
    ] = None,
) -> None:
    """Register a client; prints its id and secret as JSON, once (only a hash is stored)."""
    from gateway.auth.clients import DEFAULT_SCOPES, ClientRegistry, InvalidClientSpec

    problem = None if name is None else control_character_problem(name)
    if problem is not None:  # it would forge a line of `clients list`
        typer.echo(f"error: --name: {problem}", err=True)
        raise typer.Exit(2)
    warn_unknown_team(
        team,
        scope or DEFAULT_SCOPES,
        "inference calls with this client's tokens (gateway:invoke) will be refused until it is",
    )

    async def work(engine: AsyncEngine) -> tuple[ClientRecord, str]:
        return await ClientRegistry(engine).create(team, name, scope or [], cli_author())

    try:
        record, secret = _run(work, (InvalidClientSpec,))
    except InvalidClientSpec as invalid:
        typer.echo(f"error: {invalid}", err=True)
        raise typer.Exit(2) from None
    payload = {
        "client_id": record.client_id,
        "client_secret": secret,
        "team": record.team,
        "scopes": list(record.scopes),
    }
    typer.echo(json.dumps(payload))


@clients_app.command("list")
def clients_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Every client, revoked ones included, newest first."""
    from gateway.auth.clients import ClientRegistry

    records = _run(lambda engine: ClientRegistry(engine).list(), read_only=True)
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in records], indent=2))
        return
    rows = [
        [
            one_line(r.client_id),
            one_line(r.team),
            one_line(r.name or "-"),
            " ".join(r.scopes),
            _when(r.created_at),
            "revoked" if r.is_revoked else "active",
        ]
        for r in records
    ]
    typer.echo(_table(["CLIENT_ID", "TEAM", "NAME", "SCOPES", "CREATED", "STATUS"], rows))


@clients_app.command("revoke")
def clients_revoke(client_id: Annotated[str, typer.Argument(help="The client to revoke.")]) -> None:
    """Revoke a client: it gets no new tokens, and its tokens stop working within 2 s."""
    from gateway.auth.clients import ClientRegistry, UnknownClient

    try:
        record = _run(
            lambda engine: ClientRegistry(engine).revoke(client_id, cli_author()), (UnknownClient,)
        )
    except UnknownClient:
        typer.echo(f"error: no OAuth client {client_id!r}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked {record.client_id} (team {record.team}) at {_when(record.revoked_at)}")


def _key_status(key: SigningKey, current_kid: str | None) -> str:
    return "current" if key.kid == current_kid else ("retired" if key.is_retired else "active")


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """The signing keys, newest first: the current one signs, retired ones still verify."""
    from gateway.auth.keys import SigningKeyStore

    keys = _run(lambda engine: SigningKeyStore(engine).list_keys(), read_only=True)
    # The store signs with the newest key that is not retired.
    current = next((k.kid for k in keys if not k.is_retired), None)
    if as_json:
        listed = [
            {
                "kid": k.kid,
                "algorithm": k.algorithm,
                "created_at": k.created_at.isoformat(),
                "retired_at": k.retired_at.isoformat() if k.retired_at else None,
                "status": _key_status(k, current),
            }
            for k in keys
        ]
        typer.echo(json.dumps(listed, indent=2))
        return
    if not keys:
        typer.echo("no signing keys yet: `gateway serve` or `keys rotate` creates one", err=True)
    rows = [
        [k.kid, k.algorithm, _when(k.created_at), _when(k.retired_at), _key_status(k, current)]
        for k in keys
    ]
    typer.echo(_table(["KID", "ALG", "CREATED", "RETIRED", "STATUS"], rows))


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Make a new signing key current; the old ones verify until their tokens expire."""
    from gateway.audit import record_audit
    from gateway.auth.keys import SigningKeyStore

    async def work(engine: AsyncEngine) -> SigningKey:
        key = await SigningKeyStore(engine).rotate()
        async with engine.begin() as conn:
            await record_audit(
                conn,
                actor=cli_author(),
                action="keys.rotate",
                target=key.kid,
                after={"kid": key.kid},
            )
        return key

    key = _run(work)
    typer.echo(f"new signing key {key.kid}: it signs from now on (running replicas within 1 s)")
    typer.echo(key.kid)
