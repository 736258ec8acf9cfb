"""`gateway cache clear`: empty the response cache of a team and/or a model.

Only a shared backend can be cleared from here: with GATEWAY_REDIS_URL the
command clears Redis itself. The in-process cache lives in each serving
process's memory, which no other process can reach; then the command says so,
names the admin API that can, and exits 2.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from gateway.settings import SettingsError, load_settings

cache_app = typer.Typer(no_args_is_help=True, help="Empty the response cache.")

IN_PROCESS_EXIT = 2
NOT_SHARED = (
    "the response cache is in-process (GATEWAY_REDIS_URL is not set): it lives in each "
    "running gateway's memory, which this command cannot reach, so nothing was cleared. "
    "Ask the running gateway instead: DELETE /admin/cache?team=TEAM&model=MODEL "
    "with a token that has the gateway:admin scope."
)


def _scope(team: str | None, model: str | None) -> str:
    parts = [f"team {team!r}" if team else "", f"model {model!r}" if model else ""]
    return " and ".join(p for p in parts if p) or "every team and model"


@cache_app.command("clear")
def clear(
    team: Annotated[str | None, typer.Option(help="Only this team's entries.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model alias's entries.")] = None,
) -> None:
    """Remove cached answers (all of them unless --team or --model narrows it)."""
    from gateway.cache.entry import CacheUnavailable
    from gateway.cache.redis_backend import RedisCache

    if team == "" or model == "":
        typer.echo("error: --team and --model need a value (leave one out to mean all)", err=True)
        raise typer.Exit(1)
    try:
        settings = load_settings()
    except SettingsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    if not settings.redis_url:
        typer.echo(f"error: {NOT_SHARED}", err=True)
        raise typer.Exit(IN_PROCESS_EXIT)

    async def run(url: str) -> int:
        backend = RedisCache(url, timeout_s=5.0)
        try:
            return await backend.clear(team=team, model=model)
        finally:
            await backend.close()

    try:
        removed = asyncio.run(run(settings.redis_url))
    except CacheUnavailable as error:
        typer.echo(f"error: cannot clear the response cache: {error}", err=True)
        raise typer.Exit(1) from None
    noun = "entry" if removed == 1 else "entries"
    typer.echo(f"cleared {removed} cached {noun} of {_scope(team, model)}")
