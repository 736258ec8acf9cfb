"""The policy bundle's schema: what admins may write, checked field by field.

Pydantic models, frozen and strict about unknown keys. Values are kept as
written (`${VAR}` references unresolved); `compiled.py` turns a valid bundle
into lookup tables with secrets resolved. Cross-references (a deployment's
provider, a team's models) are checked in `compiled.py` too, where both sides
are known.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ProviderType = Literal[
    "openai", "openai-compatible", "azure", "anthropic", "gemini", "bedrock", "mock"
]
ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _secret_reference(value: str | None) -> str | None:
    if value is not None and not ENV_REFERENCE.match(value):
        raise ValueError("secrets are given only by reference, as ${ENV_VAR}")
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
        if value is not None and not re.match(r"^(https?://[^\s/?#]+[^\s?#]*|\$\{\w+\})$", value):
            raise ValueError("api_base must be an http(s) URL without query or fragment")
        return value


class DeploymentSpec(_Strict):
    provider: str
    model: Annotated[str, Field(min_length=1)]
    weight: Annotated[float, Field(gt=0)] = 1.0
    priority: Annotated[int, Field(ge=1)] = 1


class RoutingSpec(_Strict):
    """Timeouts, retries and cooldown; every field optional so a model can override some."""

    timeout_s: Annotated[float, Field(gt=0)] | None = None
    attempt_timeout_s: Annotated[float, Field(gt=0)] | None = None
    retries: Annotated[int, Field(ge=0, le=10)] | None = None
    cooldown_s: Annotated[float, Field(ge=0)] | None = None
    failure_threshold: Annotated[int, Field(ge=1)] | None = None


class PriceSpec(_Strict):
    input_per_mtok: Annotated[float, Field(ge=0)]
    output_per_mtok: Annotated[float, Field(ge=0)]
    cached_input_per_mtok: Annotated[float, Field(ge=0)] | None = None


class ModelSpec(_Strict):
    deployments: Annotated[list[DeploymentSpec], Field(min_length=1)]
    price: PriceSpec | None = None
    routing: RoutingSpec | None = None


class TeamSpec(_Strict):
    models: list[str] = Field(default_factory=list)  # aliases, or "*" for all


class PolicyBundle(_Strict):
    providers: dict[Annotated[str, Field(pattern=NAME)], ProviderSpec] = Field(default_factory=dict)
    models: dict[Annotated[str, Field(pattern=NAME)], ModelSpec] = Field(default_factory=dict)
    routing: RoutingSpec = RoutingSpec()
    teams: dict[Annotated[str, Field(pattern=NAME)], TeamSpec] = Field(default_factory=dict)
