"""`auth.issuers` entries naming the gateway's own issuer. Pure; no I/O.

The gateway verifies the tokens it issues with its own keys (`auth/authenticator.py`
routes them there), so an entry for its own issuer could never apply: its audience,
scopes and team mapping would be silently dead. New bundles (`policy check`, `apply`,
the watched folder, the admin API) are refused for it; a version stored before this
rule still runs, the entry ignored with a warning.

The own issuer is read from the environment the bundle is checked in, as `serve`
derives it (`settings.py`): GATEWAY_ISSUER_URL, else the URL of GATEWAY_HOST and
GATEWAY_PORT. `serve` exports its --host/--port there, so the admin API and the
folder watcher see what the server runs with. An environment that names none of
them (a laptop, a CI job running `policy check`) does not know the issuer: nothing
is refused there rather than a default guessed (`policy apply` and the other
commands with a database read the issuer the last `serve` recorded:
commands/policy.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.policy.errors import Path, PolicyIssue, format_path
from gateway.policy.loader import Locate
from gateway.settings import MAX_PORT, Settings, default_issuer_url


def own_issuer(env: Mapping[str, str]) -> str | None:
    """The issuer the gateway mints for in `env`; None when `env` does not say (no
    GATEWAY_ISSUER_URL, GATEWAY_HOST nor GATEWAY_PORT), or GATEWAY_PORT is unusable (the
    settings check reports that)."""
    explicit = env.get("GATEWAY_ISSUER_URL", "").strip()
    if explicit:
        return explicit
    if "GATEWAY_PORT" not in env and "GATEWAY_HOST" not in env:
        return None  # not known here: serve's default port is a guess, not its issuer
    defaults = Settings()
    try:
        port = int(env.get("GATEWAY_PORT", str(defaults.port)).strip())
    except ValueError:
        return None
    if not 0 <= port <= MAX_PORT:
        return None
    return default_issuer_url(env.get("GATEWAY_HOST", defaults.host), port)


def own_issuer_issues(raw: Mapping[str, Any], own: str | None, locate: Locate) -> list[PolicyIssue]:
    """An issue at each `auth.issuers` entry of the bundle as written whose issuer is `own`."""
    auth = raw.get("auth")
    entries = auth.get("issuers") if isinstance(auth, dict) else None
    if own is None or not isinstance(entries, list):
        return []
    issues: list[PolicyIssue] = []
    for index, entry in enumerate(entries):
        if not (isinstance(entry, dict) and entry.get("issuer") == own):
            continue
        path: Path = ("auth", "issuers", index, "issuer")
        message = (
            f"issuer {own!r} is this gateway's own issuer (GATEWAY_ISSUER_URL, else derived "
            "from GATEWAY_HOST and GATEWAY_PORT): the gateway verifies its own tokens with "
            "its own keys, so this entry could never apply; remove it"
        )
        issues.append(PolicyIssue(locate(path), format_path(path), message))
    return issues
