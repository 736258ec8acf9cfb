"""Process settings: `GATEWAY_*` environment variables, overridden by CLI flags.

Everything a replica needs to start; the policy (providers, models, teams) is
not here, it is versioned data loaded from the policy bundle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from gateway.policy.secrets import ReferenceRules
from gateway.policy.upstreams import UpstreamRules

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./gateway.db"
DEFAULT_AUDIENCE = "llm-gateway"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_TOKEN_LEEWAY_S = 30  # clock skew tolerated on exp/nbf/iat (auth/claims.py uses it)
MAX_TOKEN_LEEWAY_S = 300
# Defaults the edge (gateway/server.py) and the token endpoint (auth/login_guard.py)
# share with these settings: one place for each number.
# The request line, or one header line: room for "Authorization: Bearer " and a 16 KiB
# token, the most an external issuer's token may be (auth/external.py MAX_TOKEN_CHARS;
# Entra ID tokens with 150-200 groups are 8-11 KB).
DEFAULT_MAX_HEADER_LINE_BYTES = 20 * 1024
DEFAULT_MAX_HEADER_BYTES = 64 * 1024  # the whole request head: three such lines and more
DEFAULT_MAX_HEADERS = 100
DEFAULT_CLIENT_TIMEOUT_S = 30  # to send a request's headers and body
# An idle keep-alive connection is closed after this long: longer than a load balancer's
# own idle timeout (AWS ALB and ingress-nginx: 60 s), or the balancer may send a request
# on a connection the gateway is closing, and its client gets a 502 (uvicorn's default 5).
DEFAULT_KEEPALIVE_TIMEOUT_S = 75
DEFAULT_LOGIN_FAILURES_PER_CLIENT = 10  # failed logins per client id per address per window
DEFAULT_LOGIN_FAILURES_PER_ADDRESS = 30  # failed logins per source address per window
DEFAULT_LOGIN_FAILURE_WINDOW_S = 60
# After SIGTERM, how long requests under way (streams included) may run before they are
# cut; the Helm chart's terminationGracePeriodSeconds is this plus its preStop pause.
DEFAULT_DRAIN_GRACE_S = 30


def default_login_concurrency() -> int:
    """Secret checks (scrypt, ~60 ms of a core each) at once per process: half the cores,
    so a flood of logins never takes the core that serves requests."""
    return max(1, (os.cpu_count() or 2) // 2)


_LOCAL_HOSTS = frozenset({"", "0.0.0.0", "::", "127.0.0.1", "::1", "localhost"})


def default_issuer_url(host: str, port: int) -> str:
    """The built-in issuer's URL when GATEWAY_ISSUER_URL is unset: where `serve` listens.

    A loopback or wildcard listener is named `localhost` (what a local client
    types); behind a proxy or on another host, set GATEWAY_ISSUER_URL.
    """
    name = "localhost" if host in _LOCAL_HOSTS else host
    return f"http://[{name}]:{port}" if ":" in name else f"http://{name}:{port}"


def is_derived_issuer(issuer: str, host: str) -> bool:
    """Is `issuer` what `default_issuer_url` gives for `host` on some port?

    Tokens the gateway signed with its own key under a derived issuer stay valid
    when the port differs: a token minted before the first `serve`, or by a
    replica on another port sharing the database (and so the signing keys).
    The signature, not the port, is what proves the gateway minted it.

    `issuer` is the caller's, read from an unverified token: anything but a port of
    one to five ASCII digits is simply not ours (str.isdigit() holds for '²' and '①',
    which int() refuses, and int() refuses more than 4300 digits too).
    """
    prefix = default_issuer_url(host, 0).removesuffix("0")
    if not issuer.startswith(prefix):
        return False
    port = issuer[len(prefix) :]
    return (
        0 < len(port) <= len(str(MAX_PORT))
        and port.isascii()
        and port.isdigit()
        and 0 < int(port) <= MAX_PORT
    )


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    policy_dir: Path = Path("policies")
    issuer_url: str = "http://localhost:8080"  # default_issuer_url(host, port) unless set
    issuer_url_is_explicit: bool = False  # GATEWAY_ISSUER_URL was set: never derived
    audience: str = DEFAULT_AUDIENCE
    otlp_endpoint: str | None = None  # OTLP/HTTP collector: traces are exported there
    # OTEL_EXPORTER_OTLP_HEADERS and _TRACES_HEADERS: sent with each export (credentials:
    # never shown, so not in the repr either).
    otlp_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    trace_sample_ratio: float = 1.0  # share of new traces recorded (a caller's choice is kept)
    metrics_enabled: bool = True  # GET /metrics (GATEWAY_METRICS=off: 404, nothing counted)
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    migrate_on_start: bool = True
    token_ttl_s: int = 3600
    token_leeway_s: int = DEFAULT_TOKEN_LEEWAY_S  # clock skew allowed on exp/nbf/iat
    log_level: str = "info"
    access_log: str = "stderr"  # "stderr", "off", or a file path
    # --- edge hardening: request heads, slow clients, the token endpoint ---
    max_header_line_bytes: int = DEFAULT_MAX_HEADER_LINE_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    client_timeout_s: int = DEFAULT_CLIENT_TIMEOUT_S
    keepalive_timeout_s: int = DEFAULT_KEEPALIVE_TIMEOUT_S
    login_concurrency: int = field(default_factory=default_login_concurrency)
    login_failures_per_client: int = DEFAULT_LOGIN_FAILURES_PER_CLIENT
    login_failures_per_address: int = DEFAULT_LOGIN_FAILURES_PER_ADDRESS
    login_failure_window_s: int = DEFAULT_LOGIN_FAILURE_WINDOW_S
    # Proxies whose X-Forwarded-For / -Proto name the client (addresses or CIDRs): the
    # login limits and the logs key on that address. Empty: none; a peer is itself.
    trusted_proxies: tuple[str, ...] = ()
    # --- operations: the admin plane's own listener, the shutdown drain ---
    admin_port: int | None = None  # set: /admin and /finance only there (gateway/api/planes.py)
    drain_grace_s: int = DEFAULT_DRAIN_GRACE_S
    # --- the usage ledger's writer (usage/writer.py) ---
    ledger_spool_dir: str | None = None  # unset: next to the SQLite file, else ./ledger-spool
    ledger_queue_rows: int = 10_000  # rows waiting in memory; beyond, straight to the spool

    def with_overrides(self, **changes: object) -> Settings:
        """Apply CLI flags; a flag left unset (None) keeps the env/default value.

        Without GATEWAY_ISSUER_URL the issuer follows `--host`/`--port`.
        """
        changed = replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]  # dataclasses.replace is untyped over **kwargs
        if not changed.issuer_url_is_explicit:
            changed = replace(changed, issuer_url=default_issuer_url(changed.host, changed.port))
        return check_settings(changed)


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
MAX_PORT = 65535


class SettingsError(ValueError):
    """A setting with a value the gateway cannot use; the message names it."""


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """An on/off setting; a value that is neither (a typo) is refused, not read as off."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    words = ", ".join(TRUE_WORDS + FALSE_WORDS)
    raise SettingsError(f"{name} must be one of {words} (got {raw!r})")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a whole number (got {raw!r})") from None


def _edge_settings(env: Mapping[str, str], base: Settings) -> dict[str, int]:
    """The edge hardening settings (request heads, slow clients, the token endpoint)."""
    names = {
        "max_header_line_bytes": "GATEWAY_MAX_HEADER_LINE_BYTES",
        "max_header_bytes": "GATEWAY_MAX_HEADER_BYTES",
        "max_headers": "GATEWAY_MAX_HEADERS",
        "client_timeout_s": "GATEWAY_CLIENT_TIMEOUT_S",
        "keepalive_timeout_s": "GATEWAY_KEEPALIVE_TIMEOUT_S",
        "login_concurrency": "GATEWAY_LOGIN_CONCURRENCY",
        "login_failures_per_client": "GATEWAY_LOGIN_FAILURES_PER_CLIENT",
        "login_failures_per_address": "GATEWAY_LOGIN_FAILURES_PER_ADDRESS",
        "login_failure_window_s": "GATEWAY_LOGIN_FAILURE_WINDOW_S",
    }
    return {field: _int(env, name, getattr(base, field)) for field, name in names.items()}


def check_settings(settings: Settings) -> Settings:
    """The settings, if every value is usable; SettingsError naming the first that is not."""
    ranges = (
        ("GATEWAY_PORT (--port)", settings.port, 0, MAX_PORT),
        ("GATEWAY_WORKERS (--workers)", settings.workers, 1, 256),
        ("GATEWAY_MAX_BODY_BYTES", settings.max_body_bytes, 1, 2**40),
        ("GATEWAY_TOKEN_TTL_S", settings.token_ttl_s, 1, 366 * 86400),
        ("GATEWAY_MAX_HEADER_LINE_BYTES", settings.max_header_line_bytes, 256, 2**20),
        ("GATEWAY_MAX_HEADER_BYTES", settings.max_header_bytes, 1024, 2**24),
        ("GATEWAY_MAX_HEADERS", settings.max_headers, 8, 10_000),
        ("GATEWAY_CLIENT_TIMEOUT_S", settings.client_timeout_s, 1, 3600),
        ("GATEWAY_KEEPALIVE_TIMEOUT_S", settings.keepalive_timeout_s, 1, 3600),
        ("GATEWAY_LOGIN_CONCURRENCY", settings.login_concurrency, 1, 64),
        ("GATEWAY_LOGIN_FAILURES_PER_CLIENT", settings.login_failures_per_client, 1, 10**6),
        ("GATEWAY_LOGIN_FAILURES_PER_ADDRESS", settings.login_failures_per_address, 1, 10**6),
        ("GATEWAY_LOGIN_FAILURE_WINDOW_S", settings.login_failure_window_s, 1, 86400),
        ("GATEWAY_TOKEN_LEEWAY_S", settings.token_leeway_s, 0, MAX_TOKEN_LEEWAY_S),
        ("GATEWAY_DRAIN_GRACE_S", settings.drain_grace_s, 1, 3600),
        ("GATEWAY_LEDGER_QUEUE_ROWS", settings.ledger_queue_rows, 1, 10**7),
    )
    for name, value, low, high in ranges:
        if not low <= value <= high:
            raise SettingsError(f"{name} must be from {low} to {high} (got {value})")
    check_admin_port(settings.admin_port, settings.port)
    if not settings.audience.strip():
        # A token minted with `"aud": ""` would name no audience at all.
        raise SettingsError(
            f"GATEWAY_AUDIENCE must not be empty (got {settings.audience!r}); unset, it is "
            f"{DEFAULT_AUDIENCE!r}"
        )
    check_database_url(settings.database_url)
    if settings.redis_url is not None:
        check_redis_url(settings.redis_url)
    if settings.log_level not in LOG_LEVELS:
        raise SettingsError(
            f"GATEWAY_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)} (got {settings.log_level!r})"
        )
    return settings


def check_admin_port(admin_port: int | None, port: int) -> None:
    """SettingsError unless the admin listener's port is unset, or a port of its own."""
    if admin_port is None:
        return
    if not 1 <= admin_port <= MAX_PORT:
        raise SettingsError(
            f"GATEWAY_ADMIN_PORT (--admin-port) must be from 1 to {MAX_PORT} (got {admin_port})"
        )
    if admin_port == port:
        raise SettingsError(
            f"GATEWAY_ADMIN_PORT (--admin-port) must differ from GATEWAY_PORT (--port), "
            f"both are {port}: the admin plane needs a listener of its own"
        )


# The URL schemes `db.async_url` turns into a driver the gateway ships with.
DATABASE_SCHEMES = ("sqlite", "sqlite+aiosqlite", "postgres", "postgresql", "postgresql+asyncpg")


def check_database_url(url: str) -> None:
    """SettingsError naming GATEWAY_DATABASE_URL unless `url` is one the gateway can open."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    supported = "sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER:PASSWORD@HOST/DB"
    try:
        scheme = make_url(url).drivername
    except (ArgumentError, ValueError):
        raise SettingsError(
            f"GATEWAY_DATABASE_URL is not a database URL; expected {supported}"
        ) from None
    if scheme not in DATABASE_SCHEMES:
        raise SettingsError(
            f"GATEWAY_DATABASE_URL: the scheme {scheme}:// is not supported; use {supported} "
            "(postgresql:// and sqlite:// work too)"
        )
    database = make_url(url).database
    if scheme.startswith("sqlite") and database and Path(database).is_dir():
        # SQLite cannot open a folder: every command ended in a traceback (probe p21).
        raise SettingsError(
            f"GATEWAY_DATABASE_URL names a folder ({database}), not a SQLite file; name a "
            "file in it, such as sqlite+aiosqlite:///PATH/gateway.db"
        )


REDIS_SCHEMES = ("redis", "rediss", "unix")
MAX_REDIS_DATABASE = 2**31 - 1  # Redis reads SELECT's index as a C int


def check_redis_url(url: str) -> None:
    """SettingsError naming GATEWAY_REDIS_URL unless redis-py can open `url`, and selects
    the one database it names."""
    from urllib.parse import urlsplit

    from redis.connection import parse_url

    expected = "redis://[:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH"
    try:
        urlsplit(url).port  # noqa: B018  # reading the port is what may raise
    except ValueError:
        # Not urllib's words: they quote the port, which is the start of a password that
        # holds a "/" (`redis://:ab/cd@host` has the port "ab").
        raise SettingsError(
            f"GATEWAY_REDIS_URL must be a Redis URL: {expected} (its host and port do not "
            "parse: a port is a number up to 65535, and a password holding / ? # or @ writes "
            "them as %2F %3F %23 %40)"
        ) from None
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as error:  # redis-py's own words: the scheme, or a query value's name
        raise SettingsError(
            f"GATEWAY_REDIS_URL must be a Redis URL: {expected} ({error})"
        ) from None
    problem = redis_database_problem(url)
    if problem is not None:
        raise SettingsError(f"GATEWAY_REDIS_URL: {problem}")


def redis_database_problem(url: str) -> str | None:
    """Why `url` (one redis-py parses) names no single database, or None (DB 0 when
    it names none).

    redis-py reads the path as the database only if it is an integer once every "/" is
    removed, and else silently uses DB 0: `/13abc` was DB 0 and `/1/2` DB 12. So a
    database is plain ASCII digits (what limits/resp.py reads too), in the path (`/13`)
    or the query (`?db=13`), and the two agree. The path is shown, never the rest: a
    password is not in it, unless an unencoded "/" in the password put it there (then
    it holds the "@" that ends the password, and is not shown).
    """
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    named: list[int] = []
    path = parts.path if parts.scheme != "unix" else ""  # a socket's path names no database
    if path not in ("", "/"):
        if "@" in path:
            return (
                "the part after the host is not a database number; a password holding "
                "'/' must write it as %2F"
            )
        number = _database_number(path.removeprefix("/"))
        if number is None:
            return f"{path!r} is not a database number: write /N (e.g. /13) or ?db=N"
        named.append(number)
    in_query = parse_qs(parts.query, keep_blank_values=True).get("db", [])
    if len(in_query) > 1:
        return "?db= is given twice: name one database"
    for text in in_query:
        number = _database_number(text)
        if number is None:
            return f"?db={text!r} is not a database number: write ?db=N (e.g. ?db=13) or /N"
        named.append(number)
    if len(set(named)) > 1:
        return f"the path says database {named[0]} and ?db= says {named[1]}: name one database"
    return None


def _database_number(text: str) -> int | None:
    """`text` as a Redis database index if it is one: ASCII digits, at most a C int."""
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_REDIS_DATABASE))):
        return None
    number = int(text)
    return number if number <= MAX_REDIS_DATABASE else None


def sqlite_folder_problem(url: str) -> str | None:
    """Why a SQLite database file at `url` cannot be created or written, or None (also
    for PostgreSQL and in-memory SQLite): said plainly before the driver says it with
    a traceback from its thread."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    database = Path(parsed.database)
    folder = database.parent
    if not folder.is_dir():
        return f"GATEWAY_DATABASE_URL: the folder {folder}/ of the SQLite file does not exist"
    writable = database if database.exists() else folder
    if not os.access(writable, os.W_OK):
        return f"GATEWAY_DATABASE_URL: cannot write the SQLite file {database} (no permission)"
    return None


def _trusted_proxies(env: Mapping[str, str]) -> tuple[str, ...]:
    """GATEWAY_TRUSTED_PROXIES: comma-separated addresses or CIDRs (`*`: any peer)."""
    import ipaddress

    raw = env.get("GATEWAY_TRUSTED_PROXIES", "")
    entries = tuple(entry.strip() for entry in raw.split(",") if entry.strip())
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SettingsError(
                f"GATEWAY_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR "
                "(comma-separated, e.g. 10.0.0.0/8,127.0.0.1)"
            ) from None
    return entries


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read `GATEWAY_*` variables (unset ones take the defaults above); SettingsError
    when one is set to a value the gateway cannot use."""
    env = os.environ if env is None else env
    base = Settings()
    _check_policy_exposure(env)
    host = env.get("GATEWAY_HOST", base.host)
    port = _int(env, "GATEWAY_PORT", base.port)
    issuer_url = env.get("GATEWAY_ISSUER_URL", "").strip()
    if issuer_url and not issuer_url.startswith(("http://", "https://")):
        raise SettingsError(f"GATEWAY_ISSUER_URL must be an http(s) URL (got {issuer_url!r})")
    otlp_endpoint = _otlp_endpoint(env)
    return check_settings(
        Settings(
            database_url=env.get("GATEWAY_DATABASE_URL", base.database_url),
            redis_url=env.get("GATEWAY_REDIS_URL") or None,
            policy_dir=Path(env.get("GATEWAY_POLICY_DIR", str(base.policy_dir))),
            issuer_url=issuer_url or default_issuer_url(host, port),
            issuer_url_is_explicit=bool(issuer_url),
            audience=env.get("GATEWAY_AUDIENCE", base.audience),
            otlp_endpoint=otlp_endpoint,
            otlp_headers=_otlp_headers(env),
            trace_sample_ratio=_ratio(env, "GATEWAY_TRACE_SAMPLE_RATIO", base.trace_sample_ratio),
            metrics_enabled=_flag(env, "GATEWAY_METRICS", True),
            host=host,
            port=port,
            workers=_int(env, "GATEWAY_WORKERS", base.workers),
            max_body_bytes=_int(env, "GATEWAY_MAX_BODY_BYTES", base.max_body_bytes),
            migrate_on_start=_flag(env, "GATEWAY_MIGRATE_ON_START", True),
            token_ttl_s=_int(env, "GATEWAY_TOKEN_TTL_S", base.token_ttl_s),
            token_leeway_s=_int(env, "GATEWAY_TOKEN_LEEWAY_S", base.token_leeway_s),
            log_level=env.get("GATEWAY_LOG_LEVEL", base.log_level).strip().lower(),
            access_log=env.get("GATEWAY_ACCESS_LOG") or base.access_log,  # empty: unset
            ledger_spool_dir=env.get("GATEWAY_LEDGER_SPOOL_DIR") or None,
            ledger_queue_rows=_int(env, "GATEWAY_LEDGER_QUEUE_ROWS", base.ledger_queue_rows),
            **_edge_settings(env, base),
            trusted_proxies=_trusted_proxies(env),
            admin_port=_int(env, "GATEWAY_ADMIN_PORT", 0) or None,
            drain_grace_s=_int(env, "GATEWAY_DRAIN_GRACE_S", base.drain_grace_s),
        )
    )


def _ratio(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise SettingsError(f"{name} must be a number from 0 to 1 (got {raw!r})")
    return value


def _otlp_endpoint(env: Mapping[str, str]) -> str | None:
    """GATEWAY_OTLP_ENDPOINT: unset or empty turns tracing off; else an http(s) URL."""
    from gateway.telemetry.attributes import traces_url
    from gateway.telemetry.endpoint import shown_url

    raw = env.get("GATEWAY_OTLP_ENDPOINT", "").strip()
    if not raw:
        return None
    try:
        traces_url(raw)
    except ValueError:
        raise SettingsError(
            f"GATEWAY_OTLP_ENDPOINT must be an http(s) URL such as http://collector:4318 "
            f"(got {shown_url(raw)!r})"  # a password it may hold is not shown
        ) from None
    return raw


def _otlp_headers(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TRACES_HEADERS (the latter wins per
    name): a pair that is no header is refused at start, naming no value."""
    from gateway.telemetry.endpoint import configured_headers

    try:
        return configured_headers(env)
    except ValueError as error:
        raise SettingsError(str(error)) from None


def _check_policy_exposure(env: Mapping[str, str]) -> None:
    """GATEWAY_SECRET_ENV_ALLOW, GATEWAY_SECRET_FILE_DIRS and GATEWAY_UPSTREAM_ALLOW parse.

    The policy compiler reads them from the same environment it resolves
    references from; checking them here makes a typo fail at start, plainly.
    """
    try:
        ReferenceRules.from_env(env)
        UpstreamRules.from_env(env)
    except ValueError as error:
        raise SettingsError(str(error)) from None
