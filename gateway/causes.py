"""Why a dependency failed, in one line for the operator (/readyz, a start-up warning):
the error's class and its first line, never a password from the URL it was reached by."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

CAUSE_MAX_CHARS = 160  # of an error's message


def url_secrets(url: str | None) -> tuple[str, ...]:
    """The password a URL carries, as written and decoded: never shown with a cause."""
    try:
        password = urlsplit(url or "").password
    except ValueError:  # a port that is no number: the settings check refused it already
        return ()
    return tuple({password, unquote(password)}) if password else ()


def url_place(url: str) -> str:
    """Where a URL points, for a log line: host:port/path (no user, no password), or a
    unix socket's path."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or ''}:{parts.port or 6379}{parts.path}"


def error_cause(error: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """`Class: its first line` (a SQLAlchemy error's driver text, `orig`): cut at
    CAUSE_MAX_CHARS, `secrets` masked."""
    origin = getattr(error, "orig", None)
    source = origin if isinstance(origin, BaseException) else error
    first = source.args[0] if source.args and isinstance(source.args[0], str) else str(source)
    line = next((part.strip() for part in first.splitlines() if part.strip()), "")
    for secret in secrets:
        line = line.replace(secret, "***")
    line = line[:CAUSE_MAX_CHARS]
    return f"{type(error).__name__}: {line}" if line else type(error).__name__
