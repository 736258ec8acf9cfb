"""Process settings: `GATEWAY_*` environment variables, overridden by CLI flags.

Everything a replica needs to start; the policy (providers, models, teams) is
not here, it is versioned data loaded from the policy bundle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./gateway.db"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    policy_dir: Path = Path("policies")
    issuer_url: str = "http://localhost:8080"
    audience: str = "llm-gateway"
    otlp_endpoint: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    migrate_on_start: bool = True
    token_ttl_s: int = 3600
    log_level: str = "info"
    access_log: str = "stderr"  # "stderr", "off", or a file path

    def with_overrides(self, **changes: object) -> Settings:
        """Apply CLI flags; a flag left unset (None) keeps the env/default value."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]  # dataclasses.replace is untyped over **kwargs


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read `GATEWAY_*` variables; unknown values fall back to the defaults above."""
    env = os.environ if env is None else env
    base = Settings()
    return Settings(
        database_url=env.get("GATEWAY_DATABASE_URL", base.database_url),
        redis_url=env.get("GATEWAY_REDIS_URL") or None,
        policy_dir=Path(env.get("GATEWAY_POLICY_DIR", str(base.policy_dir))),
        issuer_url=env.get("GATEWAY_ISSUER_URL", base.issuer_url),
        audience=env.get("GATEWAY_AUDIENCE", base.audience),
        otlp_endpoint=env.get("GATEWAY_OTLP_ENDPOINT") or None,
        host=env.get("GATEWAY_HOST", base.host),
        port=int(env.get("GATEWAY_PORT", base.port)),
        workers=int(env.get("GATEWAY_WORKERS", base.workers)),
        max_body_bytes=int(env.get("GATEWAY_MAX_BODY_BYTES", base.max_body_bytes)),
        migrate_on_start=_flag(env.get("GATEWAY_MIGRATE_ON_START", "true")),
        token_ttl_s=int(env.get("GATEWAY_TOKEN_TTL_S", base.token_ttl_s)),
        log_level=env.get("GATEWAY_LOG_LEVEL", base.log_level),
        access_log=env.get("GATEWAY_ACCESS_LOG", base.access_log),
    )
