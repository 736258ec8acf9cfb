"""The policy bundle's schema: what admins may write, checked field by field.

Pydantic models, frozen and strict about unknown keys. Values are kept as
written (`${VAR}` references unresolved); `compiled.py` turns a valid bundle
into lookup tables with secrets resolved. Cross-references (a deployment's
provider, a team's models) are checked in `compiled.py` too, where both sides
are known.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

ProviderType = Literal[
    "openai", "openai-compatible", "azure", "anthropic", "gemini", "bedrock", "mock"
]
# A secret field is one reference: an environment variable, or a mounted secret file
# (`policy/secrets.py` decides which of either this gateway exposes).
ENV_REFERENCE = re.compile(r"^\$\{(?:[A-Za-z_][A-Za-z0-9_]*|file:[^}]+)\}$")
NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$"
SEGMENT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"  # NAME without "/"
_HTTP_URL = re.compile(r"^https?://(?P<authority>[^\s/?#]+)[^\s?#]*$")


def _without_slash(kind: str, why: str) -> Callable[[object], object]:
    """Refuse "/" in a name, saying why (a pattern mismatch alone would not)."""

    def check(value: object) -> object:
        if isinstance(value, str) and "/" in value:
            raise ValueError(
                f"a {kind} name may not contain '/': {why}; use letters, digits and . _ : @ -"
            )
        return value

    return check


# Model aliases may hold "/" (clients ask for `meta-llama/Llama-3-70b`), and so may
# provider names. A team's name is one URL path segment (/admin/teams/{team}); a
# guardrail profile's follows the same rule. Each validator runs before its pattern,
# so a slash is refused with a message saying why.
ModelName = Annotated[str, Field(pattern=NAME)]
ProviderName = Annotated[str, Field(pattern=NAME)]
TeamName = Annotated[
    str,
    Field(pattern=SEGMENT_NAME),
    BeforeValidator(_without_slash("team", "it is one segment of /admin/teams/{team}")),
]
ProfileName = Annotated[
    str,
    Field(pattern=SEGMENT_NAME),
    BeforeValidator(
        _without_slash("guardrail profile", "it is one URL path segment, like a team's")
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _secret_reference(value: str | None) -> str | None:
    if value is not None and not ENV_REFERENCE.match(value):
        raise ValueError(
            "secrets are given only by reference, as ${ENV_VAR} or ${file:/run/secrets/NAME}"
        )
    return value


class ProviderSpec(_Strict):
    type: ProviderType
    api_base: str | None = None
    api_key: str | None = None
    api_version: str | None = None  # azure
    region: str | None = None  # bedrock
    aws_access_key_id: str | None = None  # bedrock
    aws_secret_access_key: str | None = None  # bedrock

    @field_validator("api_key", "aws_access_key_id", "aws_secret_access_key")
    @classmethod
    def _is_reference(cls, value: str | None) -> str | None:
        return _secret_reference(value)

    @field_validator("api_base")
    @classmethod
    def _is_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        url = _HTTP_URL.match(value)
        if "$" in (url["authority"] if url else value.partition("/")[0]):
            # A reference there could send requests (and the key) to a host the
            # environment chooses; the operator's allow-list checks literal hosts.
            raise ValueError(
                "the scheme, host and port of api_base must be written out; "
                "a ${VAR} may stand only in its path"
            )
        if url is None:
            raise ValueError("api_base must be an http(s) URL without query or fragment")
        if "@" in url["authority"]:
            # Never echo the value: it holds the credentials.
            raise ValueError(
                "api_base must not hold credentials (user:secret@host): secrets are given "
                "only by reference; put the key in api_key: ${ENV_VAR}"
            )
        return value


class PriceSpec(_Strict):
    input_per_mtok: Annotated[float, Field(ge=0)]
    output_per_mtok: Annotated[float, Field(ge=0)]
    cached_input_per_mtok: Annotated[float, Field(ge=0)] | None = None  # default: input's
    cache_write_per_mtok: Annotated[float, Field(ge=0)] | None = None  # default: input's


class DeploymentSpec(_Strict):
    provider: str
    model: Annotated[str, Field(min_length=1)]
    weight: Annotated[float, Field(gt=0)] = 1.0
    priority: Annotated[int, Field(ge=1)] = 1
    price: PriceSpec | None = None  # this deployment's own price; else the model's


class RoutingSpec(_Strict):
    """Timeouts, retries and cooldown; every field optional so a model can override some."""

    timeout_s: Annotated[float, Field(gt=0)] | None = None
    attempt_timeout_s: Annotated[float, Field(gt=0)] | None = None
    retries: Annotated[int, Field(ge=0, le=10)] | None = None
    cooldown_s: Annotated[float, Field(ge=0)] | None = None
    failure_threshold: Annotated[int, Field(ge=1)] | None = None


class ModelSpec(_Strict):
    deployments: Annotated[list[DeploymentSpec], Field(min_length=1)]
    price: PriceSpec | None = None
    routing: RoutingSpec | None = None


DEFAULT_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
SCOPES = ("gateway:invoke", "gateway:admin", "gateway:finance")
Scope = Literal["gateway:invoke", "gateway:admin", "gateway:finance"]


def _invoke_only() -> list[Scope]:
    return ["gateway:invoke"]


class IssuerSpec(_Strict):
    """An external OAuth issuer whose JWT access tokens the gateway accepts."""

    issuer: Annotated[str, Field(min_length=1)]
    audience: str | list[str]
    jwks_uri: str | None = None  # else OpenID/RFC 8414 discovery from `issuer`
    algorithms: list[str] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS))
    team_claim: str = "team"  # dotted path; a string, or a list mapped through team_map
    team_map: dict[str, str] | None = None  # claim value → team (for groups/roles claims)
    subject_claim: str = "sub"
    client_id_claim: str | None = None  # default: client_id, azp, appid or cid
    scope_claim: str | None = None  # default: scope, then scp
    default_scopes: list[Scope] = Field(default_factory=_invoke_only)
    # What this issuer may grant at all: a token asking for more gets the intersection,
    # so an IdP grants admin or finance only where the operator says so.
    allowed_scopes: list[Scope] = Field(default_factory=_invoke_only)
    leeway_s: Annotated[int, Field(ge=0, le=60)] | None = None  # None: GATEWAY_TOKEN_LEEWAY_S

    @field_validator("algorithms")
    @classmethod
    def _safe_algorithms(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if a not in ALLOWED_ALGORITHMS]
        if bad:
            raise ValueError(
                f"algorithm(s) {', '.join(bad)} not allowed for an external issuer "
                f"(allowed: {', '.join(sorted(ALLOWED_ALGORITHMS))}; never none or HS*)"
            )
        if not value:
            raise ValueError("at least one algorithm is required")
        return value

    @field_validator("jwks_uri", "issuer")
    @classmethod
    def _is_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://\S+$", value):
            raise ValueError("must be an http(s) URL")
        return value


class AuthSpec(_Strict):
    issuers: list[IssuerSpec] = Field(default_factory=list)


Period = Literal["day", "week", "month"]


class BudgetSpec(_Strict):
    period: Period
    tokens: Annotated[int, Field(gt=0)] | None = None
    usd: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _one_quantity(self) -> BudgetSpec:
        if (self.tokens is None) == (self.usd is None):
            raise ValueError("a budget sets exactly one of tokens or usd")
        return self


class LimitsSpec(_Strict):
    rpm: Annotated[int, Field(gt=0)] | None = None
    tpm: Annotated[int, Field(gt=0)] | None = None
    concurrency: Annotated[int, Field(gt=0)] | None = None


class PerUserSpec(_Strict):
    rpm: Annotated[int, Field(gt=0)] | None = None
    tpm: Annotated[int, Field(gt=0)] | None = None
    concurrency: Annotated[int, Field(gt=0)] | None = None
    tokens_per_day: Annotated[int, Field(gt=0)] | None = None


class BackendErrorMode(StrEnum):
    """What the gateway does when the limits backend (Redis) cannot be reached."""

    CLOSED = "closed"  # refuse with 503: no request goes unchecked
    OPEN = "open"  # serve, log and count every request that went unchecked


class LimitsBackendSpec(_Strict):
    on_backend_error: BackendErrorMode = BackendErrorMode.CLOSED


class TeamSpec(_Strict):
    models: list[str] = Field(default_factory=list)  # aliases, or "*" for all
    clients: list[str] = Field(default_factory=list)  # OAuth client ids of the team
    budgets: list[BudgetSpec] = Field(default_factory=list)
    limits: LimitsSpec | None = None
    per_user: PerUserSpec | None = None
    guardrails: list[str] = Field(default_factory=list)  # profile names
    max_tokens_default: Annotated[int, Field(gt=0)] | None = None  # reserve when unset


Detector = Literal["secrets", "email", "credit_card", "phone", "ip_address", "iban"]
Action = Literal["block", "redact", "flag"]


class GuardrailRule(_Strict):
    detector: Detector | None = None
    pattern: str | None = None
    name: str | None = None  # defaults to the detector's name
    action: Action

    @model_validator(mode="after")
    def _detector_or_pattern(self) -> GuardrailRule:
        if (self.detector is None) == (self.pattern is None):
            raise ValueError("a rule sets exactly one of detector or pattern")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
            if self.name is None:
                raise ValueError("a pattern rule needs a name")
        return self


class GuardrailProfile(_Strict):
    input: list[GuardrailRule] = Field(default_factory=list)
    output: list[GuardrailRule] = Field(default_factory=list)
    max_input_tokens: Annotated[int, Field(gt=0)] | None = None


class PolicyBundle(_Strict):
    providers: dict[ProviderName, ProviderSpec] = Field(default_factory=dict)
    models: dict[ModelName, ModelSpec] = Field(default_factory=dict)
    routing: RoutingSpec = RoutingSpec()
    teams: dict[TeamName, TeamSpec] = Field(default_factory=dict)
    auth: AuthSpec = AuthSpec()
    guardrails: dict[ProfileName, GuardrailProfile] = Field(default_factory=dict)
    timezone: str = "UTC"  # where budget periods begin
    limits: LimitsBackendSpec = LimitsBackendSpec()

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value
