"""`gateway usage TEAM [--user S] [--json] [--server URL]`: a team's budgets and limits
right now.

Runs beside the server, in its own process. With GATEWAY_REDIS_URL it reads the
same Redis the servers reserve in: used, reserved, remaining, exactly as
GET /admin/teams/{team}/usage shows them. Without Redis the counters live in the
server's memory, so it asks the server: GET /admin/teams/{team}/usage at --server, else
on this host (the admin port if GATEWAY_ADMIN_PORT is set, else GATEWAY_PORT; neither
set: where the last `gateway serve` on this database listened, as it recorded; else
port 8080), with an admin token it mints for 15 s, as `gateway token` would. When no
server answers, or Redis is set but cannot be read, `used` is the ledger's (what
finished requests cost; the ledger writer lands a row about a second after a request
ends) and `reserved` and the rate limits are shown as unknown (null, "?"), with a note
on stderr; exit 0.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import httpx
import typer

from gateway.settings import Settings, load_settings

SERVER_TIMEOUT_S = 5.0
ADMIN_TOKEN_TTL_S = 15  # the token the command mints to ask the server: used at once


def _table(view: dict[str, Any]) -> str:
    from gateway.limits.answers import go_duration  # x-ratelimit-reset-*'s format

    def shown(value: object) -> str:
        return "?" if value is None else str(value)

    from gateway.errors import escaped  # a subject is the caller's text: no forged line

    who = escaped(view["team"]) + (f" / user {escaped(view['user'])}" if view["user"] else "")
    lines = [f"usage of {who} at {view['at']} (periods in {view['timezone']})"]
    for b in view["budgets"]:
        lines.append(
            f"  budget {b['scope']:4} {b['period']:5} {b['unit']:6} limit {b['limit']}"
            f"  used {shown(b['used'])}  reserved {shown(b['reserved'])}"
            f"  remaining {shown(b['remaining'])}  resets {b['resets_at']}"
        )
    for r in view["limits"]:
        line = (
            f"  limit  {r['scope']:4} {r['kind']:11} limit {r['limit']}"
            f"  used {shown(r['used'])}  remaining {shown(r['remaining'])}"
        )
        if r["kind"] != "concurrency":  # a slot frees when a request ends, not on a clock
            ms = r.get("resets_in_ms")
            line += f"  resets in {'?' if ms is None else go_duration(ms)}"
        lines.append(line)
    for rule in view.get("per_user", ()):
        what = f"{rule['period']:5} {rule['unit']:6} " if rule["kind"] == "budget" else ""
        lines.append(
            f"  per user, each: {rule['kind']:11} {what}limit {rule['limit']}  (see --user SUBJECT)"
        )
    if not view["budgets"] and not view["limits"] and not view.get("per_user"):
        lines.append("  no budgets or limits")
    return "\n".join(lines)


async def _view(
    settings: Settings, team: str, user: str | None, *, from_redis: bool
) -> dict[str, Any] | str:
    """The usage view read here: from Redis (`from_redis`), else the ledger's used alone.
    Raises BackendUnavailable when Redis cannot be read."""
    from gateway.db import create_engine
    from gateway.limits.backend import LimitsBackend
    from gateway.limits.memory import MemoryBackend
    from gateway.limits.rebuild import ledger_reader
    from gateway.limits.service import Limits
    from gateway.limits.view import usage_view
    from gateway.policy.service import PolicyService

    engine = create_engine(settings.database_url)
    backend: LimitsBackend
    if from_redis and settings.redis_url:
        from gateway.limits.redis_backend import RedisBackend

        backend = RedisBackend.from_url(settings.redis_url)
    else:
        backend = MemoryBackend()  # empty: used comes from the ledger alone
    limits = Limits(backend, ledger_reader(engine))
    try:
        service = PolicyService(engine, os.environ)  # the server's environment, as `policy` uses
        running = await service.current()
        if running is None:
            return "no policy version is running yet"
        policy = await service.compile(running)
        rules = policy.teams.get(team)
        if rules is None:
            return f"there is no team {team!r} in the running policy (version {running.version})"
        return await usage_view(limits, policy, rules, user, reserved_known=from_redis)
    finally:
        await limits.close()
        await engine.dispose()


# Hosts a URL without a scheme may name: on this host, plain HTTP is what `serve` speaks
# (curl and httpie assume http:// too). Elsewhere the admin token would cross a network
# in the clear to a host that may want https://, so the scheme must be written.
_LOOPBACK_NAMES = ("localhost", "localhost.")


def checked_server(raw: str) -> str:
    """`--server` as a URL: as written when it has an http(s) scheme; `http://` added to
    a loopback address without one (`127.0.0.1:8080`, `localhost:8080`, `[::1]:8080`).
    Raises ValueError, saying what to write, for anything else."""
    text = raw.strip()
    has_scheme = "://" in text
    url = (text if has_scheme else f"http://{text}").rstrip("/")
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number
    except ValueError:
        scheme, host = "", None
    if scheme not in ("http", "https") or not host:
        raise ValueError(
            f"--server {raw!r} is not a server URL: write it as http://HOST:PORT (or https://)"
        )
    if not has_scheme and not _is_loopback(host):
        raise ValueError(
            f"--server {raw!r} has no scheme: write http://{url[7:]} or https://{url[7:]} "
            "(only an address on this host, such as 127.0.0.1:8080, may leave it out)"
        )
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_url(
    settings: Settings,
    env: Mapping[str, str],
    recorded: str | None,
    recorded_port: str | None = None,
) -> str:
    """The server on this host, where it answers /admin: the port this environment sets,
    else where the last `serve` on the database listened (`recorded`), else the default.
    A GATEWAY_PORT alone that names the port that server listened on (`recorded_port`)
    says which server, not where its /admin is: its admin port, when it had one (the
    image sets GATEWAY_PORT and serves /admin on --admin-port)."""
    is_port_set = settings.admin_port is not None or bool(env.get("GATEWAY_PORT", "").strip())
    names_that_server = settings.admin_port is None and recorded_port == str(settings.port)
    if recorded is not None and (not is_port_set or names_that_server):
        return recorded
    return f"http://127.0.0.1:{settings.admin_port or settings.port}"


async def _recorded_server(settings: Settings) -> tuple[str | None, str | None]:
    """Where the last `serve` on the database answered /admin, and its teams' port."""
    from gateway.auth.issuer_record import served_admin_url, served_listener
    from gateway.db import create_engine

    engine = create_engine(settings.database_url)
    try:
        listener = await served_listener(engine)
        return await served_admin_url(engine), listener.get("GATEWAY_PORT")
    finally:
        await engine.dispose()


def _asked(
    settings: Settings, url: str, team: str, user: str | None
) -> dict[str, Any] | str | None:
    """The running server's own view (its in-process counters: reserved, rates and
    concurrency included); its error message when it refuses; None, having said why on
    stderr, when the ledger's view must do (none answers, or its Redis is down: 503)."""
    from gateway.commands.auth import mint_token

    token = mint_token(settings, team, "gateway-cli", ("gateway:admin",), ADMIN_TOKEN_TTL_S)
    try:
        response = httpx.get(
            f"{url}/admin/teams/{quote(team, safe='')}/usage",
            params={"user": user} if user else None,
            headers={"authorization": f"Bearer {token}"},
            timeout=SERVER_TIMEOUT_S,
        )
    except httpx.HTTPError:
        typer.echo(
            f"no server answered at {url}: reserved and the rate limits are unknown, "
            "used is the ledger's",
            err=True,
        )
        return None
    if response.status_code == 200:
        view = _usage_view_of(response, team)
        if view is None:
            return f"the server at {url} did not answer with a usage view (is it a gateway?)"
        return view
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    if response.status_code == 503:  # its limits store (Redis) cannot be read: the ledger's
        typer.echo(
            f"the server at {url} could not read its limits ({message}): reserved and the "
            "rate limits are unknown, used is the ledger's",
            err=True,
        )
        return None
    return f"the server at {url} answered {response.status_code}: {message}"


def _usage_view_of(response: httpx.Response, team: str) -> dict[str, Any] | None:
    """The answer as a usage view of `team`, or None when it is none (another service
    on that port, a proxy's page): printed as one, it would read as the team's usage."""
    try:
        view = response.json()
    except ValueError:
        return None
    if not isinstance(view, dict) or view.get("team") != team:
        return None
    if not all(isinstance(view.get(name), list) for name in ("budgets", "limits")):
        return None
    return view


def usage(
    team: Annotated[str, typer.Argument(help="The team, as the policy names it.")],
    user: Annotated[str | None, typer.Option(help="Also one user (token subject).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    server: Annotated[
        str | None,
        typer.Option(
            help="Without Redis: the server to ask, http(s)://HOST:PORT; http:// may be left "
            "out for this host (127.0.0.1:PORT). Default: this host's port, else where the "
            "last `serve` on the database listened."
        ),
    ] = None,
) -> None:
    """Show a team's budgets and limits: used, reserved, remaining, and when each resets."""
    from gateway.commands.existing_db import (
        DatabaseNotReady,
        connection_problem,
        require_migrated,
    )
    from gateway.limits.backend import BackendUnavailable

    if user is not None and not user.strip():  # as the API's `user=` is refused
        typer.echo("error: --user is empty: give a token subject, or leave it out", err=True)
        raise typer.Exit(2)
    if server is not None:  # a mistyped address: said now, not as "no server answered"
        try:
            server = checked_server(server)
        except ValueError as wrong:
            typer.echo(f"error: {wrong}", err=True)
            raise typer.Exit(2) from None
    settings = load_settings()
    found: dict[str, Any] | str | None = None
    try:
        # Read-only: a mistyped path must not become an empty, migrated database.
        asyncio.run(require_migrated(settings.database_url))
        if not settings.redis_url:  # the counters are in the server's memory: ask it
            if server is None:
                recorded, recorded_port = asyncio.run(_recorded_server(settings))
                server = server_url(settings, os.environ, recorded, recorded_port)
            url = server.rstrip("/")
            found = _asked(settings, url, team, user)
        if found is None and settings.redis_url:
            try:
                found = asyncio.run(_view(settings, team, user, from_redis=True))
            except BackendUnavailable as down:
                typer.echo(
                    f"warning: the limits store could not be read ({down}): reserved and the rate "
                    "limits are unknown, used is the ledger's",
                    err=True,
                )
        if found is None:
            found = asyncio.run(_view(settings, team, user, from_redis=False))
    except DatabaseNotReady as missing:
        typer.echo(f"error: {missing}", err=True)
        raise typer.Exit(1) from None
    except typer.Exit:  # refused already, in its own words (a team that can never be one)
        raise
    except Exception as exc:  # an unreachable database or Redis: say which, no traceback
        problem = connection_problem(settings.database_url, exc)
        if problem is not None:
            typer.echo(f"error: {problem}", err=True)
        else:
            typer.echo(f"error: cannot read usage: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    if isinstance(found, str):  # the refusal's words: no policy, no such team, the server's
        typer.echo(f"error: {found}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(found, indent=2) if as_json else _table(found))
