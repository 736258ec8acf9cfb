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

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.api.fields import MAX_OUTPUT_TOKENS  # the largest cap a request may set
from gateway.guardrails.kinds import DetectorKind, FailMode, GuardAction, Where
from gateway.guardrails.patterns import pattern_problem
from gateway.policy.timezones import is_iana_zone
from gateway.usage.nano import usd_to_nano

ProviderType = Literal[
    "openai", "openai-compatible", "azure", "anthropic", "gemini", "bedrock", "mock"
]
# A secret field is one reference: an environment variable, or a mounted secret file
# (`policy/secrets.py` decides which of either this gateway exposes).
ENV_REFERENCE = re.compile(r"^\$\{(?:[A-Za-z_][A-Za-z0-9_]*|file:[^}]+)\}$")
NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$"
SEGMENT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"  # NAME without "/"
_HTTP_URL = re.compile(r"^https?://(?P<authority>[^\s/?#]+)[^\s?#]*$")
# A scheme is case-insensitive (RFC 3986 §3.1): `HTTP://` is written in lower case before
# any check, so every check (and the client) sees one spelling.
_HTTP_SCHEME = re.compile(r"^(?i:https?)://")


# Numbers are strict and finite. YAML reads `yes`/`on` as true, which lax validation takes
# as 1 (`concurrency: on` would be a limit of one); `.inf` and `.nan` pass `gt=0` yet are
# stored as JSON null, a version that cannot be loaded back.
Integer = Annotated[int, Field(strict=True)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def _without_slash(kind: str, why: str) -> Callable[[object], object]:
    """Refuse "/" in a name, saying why (a pattern mismatch alone would not)."""

    def check(value: object) -> object:
        if isinstance(value, str) and "/" in value:
            raise ValueError(
                f"a {kind} name may not contain '/': {why}; use letters, digits and . _ : @ -"
            )
        return value

    return check


# Bounds no real policy reaches. A name is echoed in errors and logs, is a URL path
# segment (a team's, a profile's) and a ledger column (which keeps 256 characters uncut);
# a URL is fetched. Past one the field is refused by name, not stored (and echoed) whole.
MAX_NAME_CHARS = 128  # a team, provider or guardrail profile
MAX_LONG_NAME_CHARS = 256  # a model alias, a deployment's upstream model, an OAuth client id
MAX_URL_CHARS = 2048


def _at_most(limit: int, what: str) -> BeforeValidator:
    """Refuse a string longer than `limit`, saying what it is (before any pattern runs)."""

    def check(value: object) -> object:
        if isinstance(value, str) and len(value) > limit:
            raise ValueError(f"{what} is at most {limit} characters (this one has {len(value)})")
        return value

    return BeforeValidator(check)


# Model aliases may hold "/" (clients ask for `meta-llama/Llama-3-70b`), and so may
# provider names. A team's name is one URL path segment (/admin/teams/{team}); a
# guardrail profile's follows the same rule. Each validator runs before its pattern,
# so a slash is refused with a message saying why.
ModelName = Annotated[str, Field(pattern=NAME), _at_most(MAX_LONG_NAME_CHARS, "a model alias")]
ProviderName = Annotated[str, Field(pattern=NAME), _at_most(MAX_NAME_CHARS, "a provider name")]
TeamName = Annotated[
    str,
    Field(pattern=SEGMENT_NAME),
    BeforeValidator(_without_slash("team", "it is one segment of /admin/teams/{team}")),
    _at_most(MAX_NAME_CHARS, "a team name"),
]
ProfileName = Annotated[
    str,
    Field(pattern=SEGMENT_NAME),
    BeforeValidator(
        _without_slash("guardrail profile", "it is one URL path segment, like a team's")
    ),
    _at_most(MAX_NAME_CHARS, "a guardrail profile name"),
]
# A reference to a name is bounded as the name is: a longer one can name nothing.
ModelReference = Annotated[str, _at_most(MAX_LONG_NAME_CHARS, "a model alias")]
ProviderReference = Annotated[str, _at_most(MAX_NAME_CHARS, "a provider name")]
TeamReference = Annotated[str, _at_most(MAX_NAME_CHARS, "a team name")]
ProfileReference = Annotated[str, _at_most(MAX_NAME_CHARS, "a guardrail profile name")]
ClientId = Annotated[str, _at_most(MAX_LONG_NAME_CHARS, "an OAuth client id")]
Url = Annotated[str, _at_most(MAX_URL_CHARS, "a URL")]


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
    api_base: Url | None = None
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
        scheme = _HTTP_SCHEME.match(value)
        if scheme is not None:
            value = scheme[0].lower() + value[scheme.end() :]
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


# The dearest price a policy may set, USD per million tokens (list prices today are at
# most a few hundred). Bounded so a request's cost always fits the ledger's 64-bit
# nano-USD: 2 x (2**31 - 1) tokens (usage.MAX_CHARGED_TOKENS of input and of output)
# at 1e14 nano-USD per Mtok is 4.3e17 nano-USD, well under 2**63 - 1 (9.2e18).
MAX_PRICE_PER_MTOK = 100_000
PricePerMtok = Annotated[Number, Field(ge=0, le=MAX_PRICE_PER_MTOK)]


class PriceSpec(_Strict):
    input_per_mtok: PricePerMtok
    output_per_mtok: PricePerMtok
    cached_input_per_mtok: PricePerMtok | None = None  # default: input's
    cache_write_per_mtok: PricePerMtok | None = None  # default: input's


MAX_WEIGHT = 1e6  # a deployment's share of its priority's traffic
MAX_ROUTING_S = 86_400.0  # a day: any deadline or cooldown longer is a mistake


class DeploymentSpec(_Strict):
    provider: ProviderReference
    model: Annotated[
        str, Field(min_length=1), _at_most(MAX_LONG_NAME_CHARS, "a deployment's model")
    ]
    # A ratio: bounded so that weights add up to a number (two near 1.8e308 summed to
    # infinity and sent every request to the last deployment: probe p17).
    weight: Annotated[Number, Field(gt=0, le=MAX_WEIGHT)] = 1.0
    priority: Annotated[Integer, Field(ge=1)] = 1
    price: PriceSpec | None = None  # this deployment's own price; else the model's


class RoutingSpec(_Strict):
    """Timeouts, retries and cooldown; every field optional so a model can override some."""

    timeout_s: Annotated[Number, Field(gt=0, le=MAX_ROUTING_S)] | None = None
    attempt_timeout_s: Annotated[Number, Field(gt=0, le=MAX_ROUTING_S)] | None = None
    retries: Annotated[Integer, Field(ge=0, le=10)] | None = None
    cooldown_s: Annotated[Number, Field(ge=0, le=MAX_ROUTING_S)] | None = None
    failure_threshold: Annotated[Integer, Field(ge=1)] | None = None


# A day is as long as an exact answer may be served again; 1 GiB as much as one
# team's entries for one model may hold in a process (Redis bounds its own memory).
MAX_CACHE_TTL_S = 86_400
MAX_CACHE_BYTES = 1 << 30


class CacheSpec(_Strict):
    """The response cache for a team or a model: on only where a policy says so."""

    ttl_s: Annotated[Integer, Field(gt=0, le=MAX_CACHE_TTL_S)]
    max_bytes: Annotated[Integer, Field(gt=0, le=MAX_CACHE_BYTES)]


class ModelSpec(_Strict):
    deployments: Annotated[list[DeploymentSpec], Field(min_length=1)]
    price: PriceSpec | None = None
    routing: RoutingSpec | None = None
    cache: CacheSpec | None = None  # wins over the team's (compiled.py)


DEFAULT_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
SCOPES = ("gateway:invoke", "gateway:admin", "gateway:finance")
Scope = Literal["gateway:invoke", "gateway:admin", "gateway:finance"]


def _invoke_only() -> list[Scope]:
    return ["gateway:invoke"]


# A claim's name or dotted path: an empty (or blank) one names no claim, and every token
# of the issuer would be refused (probe p15).
ClaimName = Annotated[str, Field(min_length=1, pattern=r"\S")]


class IssuerSpec(_Strict):
    """An external OAuth issuer whose JWT access tokens the gateway accepts."""

    issuer: Annotated[Url, Field(min_length=1)]
    audience: str | list[str]
    jwks_uri: Url | None = None  # else OpenID/RFC 8414 discovery from `issuer`
    algorithms: list[str] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS))
    # Dotted path; a string, or a list (groups, roles) whose values name exactly one team,
    # directly or through team_map (auth/external.py; several teams: refused)
    team_claim: ClaimName = "team"
    team_map: dict[str, TeamReference] | None = None  # claim value → team (for groups/roles claims)
    subject_claim: ClaimName = "sub"
    client_id_claim: ClaimName | None = None  # default: client_id, azp, appid or cid
    scope_claim: ClaimName | None = None  # default: scope, then scp
    default_scopes: list[Scope] = Field(default_factory=_invoke_only)
    # What this issuer may grant at all: a token asking for more gets the intersection,
    # so an IdP grants admin or finance only where the operator says so.
    allowed_scopes: list[Scope] = Field(default_factory=_invoke_only)
    leeway_s: Annotated[Integer, Field(ge=0, le=60)] | None = None  # None: GATEWAY_TOKEN_LEEWAY_S

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

    @field_validator("audience")
    @classmethod
    def _names_an_audience(cls, value: str | list[str]) -> str | list[str]:
        # As GATEWAY_AUDIENCE: `""` let in tokens with `"aud": ""` (naming no audience),
        # and `[]` refused every token of the issuer without saying why.
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("the audience must not be empty: an empty aud claim names none")
            return value
        if not value:
            raise ValueError(
                "the audience list names at least one audience, one of which a token's aud "
                "claim must hold"
            )
        for i, audience in enumerate(value):
            if not audience.strip():
                raise ValueError(f"audience[{i}] must not be empty: an empty aud claim names none")
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

# rpm and tpm: the Redis backend counts them in Lua, whose numbers are doubles; a rate
# near 2^63 came back from Redis as a negative `x-ratelimit-remaining`. Up to this bound
# Redis and the in-process backend agree to the unit (test_limits_redis.py); it is far
# above any real team's need, and a team that needs no limit sets none. Budgets and
# concurrency need no bound: Redis only compares them, and never returns them.
MAX_RATE_PER_MINUTE = 1_000_000_000_000_000
RatePerMinute = Annotated[Integer, Field(gt=0, le=MAX_RATE_PER_MINUTE)]


# The smallest USD budget: one nano-dollar, the ledger's unit (`usd_to_nano`); a smaller
# one rounds to a 0 USD budget that refuses every request.
SMALLEST_USD_BUDGET = "0.000000001"


class BudgetSpec(_Strict):
    period: Period
    tokens: Annotated[Integer, Field(gt=0)] | None = None
    usd: Annotated[Number, Field(gt=0)] | None = None

    @field_validator("usd")
    @classmethod
    def _at_least_one_nano_dollar(cls, value: float | None) -> float | None:
        if value is not None and usd_to_nano(value) < 1:
            raise ValueError(
                f"{value!r} USD is less than one nano-dollar, the ledger's unit: the smallest "
                f"USD budget is {SMALLEST_USD_BUDGET}"
            )
        return value

    @model_validator(mode="after")
    def _one_quantity(self) -> BudgetSpec:
        if (self.tokens is None) == (self.usd is None):
            raise ValueError("a budget sets exactly one of tokens or usd")
        return self


class LimitsSpec(_Strict):
    rpm: RatePerMinute | None = None
    tpm: RatePerMinute | None = None
    concurrency: Annotated[Integer, Field(gt=0)] | None = None


def _repeated_budget(named: list[tuple[str, BudgetSpec]]) -> str | None:
    """The first two of `named` (place, budget) of one period and unit, said as
    "A and B are both day tokens budgets"; None when each is alone."""
    first: dict[tuple[str, str], str] = {}
    for place, entry in named:
        unit = "tokens" if entry.tokens is not None else "usd"
        seen = first.setdefault((entry.period, unit), place)
        if seen != place:
            return f"{seen} and {place} are both {entry.period} {unit} budgets"
    return None


class PerUserSpec(_Strict):
    """What each token subject of the team may use on its own (its own counters)."""

    rpm: RatePerMinute | None = None
    tpm: RatePerMinute | None = None
    concurrency: Annotated[Integer, Field(gt=0)] | None = None
    tokens_per_day: Annotated[Integer, Field(gt=0)] | None = None  # {period: day, tokens: N}
    budgets: list[BudgetSpec] = Field(default_factory=list)

    @field_validator("budgets")
    @classmethod
    def _one_budget_per_period_and_unit(
        cls, budgets: list[BudgetSpec], info: ValidationInfo
    ) -> list[BudgetSpec]:
        # As a team's: one period and unit is one counter, charged once per budget naming
        # it. tokens_per_day is validated before (field order), so it is in `info.data`.
        named = [(f"budgets[{i}]", entry) for i, entry in enumerate(budgets)]
        per_day = info.data.get("tokens_per_day")
        if per_day is not None:
            named.insert(0, ("tokens_per_day", BudgetSpec(period="day", tokens=per_day)))
        repeated = _repeated_budget(named)
        if repeated is not None:
            raise ValueError(
                f"{repeated}; a user has one budget per period and unit: keep the one "
                "that should bind (the lower)"
            )
        return budgets


class BackendErrorMode(StrEnum):
    """What the gateway does when the limits backend (Redis) cannot be reached."""

    CLOSED = "closed"  # refuse with 503: no request goes unchecked
    OPEN = "open"  # serve, log and count every request that went unchecked


class LimitsBackendSpec(_Strict):
    on_backend_error: BackendErrorMode = BackendErrorMode.CLOSED


class TeamSpec(_Strict):
    models: list[ModelReference] = Field(default_factory=list)  # aliases, or "*" for all
    clients: list[ClientId] = Field(default_factory=list)  # OAuth client ids of the team
    budgets: list[BudgetSpec] = Field(default_factory=list)
    limits: LimitsSpec | None = None
    per_user: PerUserSpec | None = None
    guardrails: list[ProfileReference] = Field(default_factory=list)  # profile names
    # reserved (and sent upstream as the cap) when a request sets none
    max_tokens_default: Annotated[Integer, Field(gt=0, le=MAX_OUTPUT_TOKENS)] | None = None
    cache: CacheSpec | None = None  # exact-match answers, this team only
    # The access log line carries this team's prompt and completion text (as the
    # guardrails left them, each cut at logs.CONTENT_MAX_CHARS). Off: no text (SPEC §7).
    log_content: bool = False

    @field_validator("budgets")
    @classmethod
    def _one_budget_per_period_and_unit(cls, budgets: list[BudgetSpec]) -> list[BudgetSpec]:
        # A team's budgets of one period and unit are one counter: two of them charged
        # every request twice (a probe saw 108 tokens used count as 216 on both).
        repeated = _repeated_budget([(f"budgets[{i}]", b) for i, b in enumerate(budgets)])
        if repeated is not None:
            raise ValueError(
                f"{repeated}; a team has one budget per period and unit: keep the one "
                "that should bind (the lower)"
            )
        return budgets


RuleName = Annotated[
    str,
    Field(pattern=SEGMENT_NAME, max_length=64),
    BeforeValidator(_without_slash("guardrail rule", "a block names it in the error message")),
]
_CLASSIFIER_FIELDS = ("provider", "url", "model", "threshold", "timeout_s")


class GuardrailRule(_Strict):
    """One rule: what to look for (a detector, a pattern, keywords or a classifier), and
    what to do when it fires. Its name defaults to its detector's."""

    detector: DetectorKind | None = None
    pattern: str | None = None  # RE2 syntax (linear time); implies detector: pattern
    keywords: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(min_length=1)]
        | None
    ) = None
    name: RuleName | None = None
    action: GuardAction
    where: list[Where] | None = None  # in a profile's `rules:` list; default both
    # detector: classifier
    provider: ProviderReference | None = None  # a provider of this bundle: /moderations
    url: Url | None = None  # or an OpenAI-moderations-shaped HTTP endpoint
    model: str | None = None
    threshold: Annotated[Number, Field(ge=0, le=1)] | None = None  # default 0.5
    timeout_s: Annotated[Number, Field(gt=0, le=60)] | None = None  # default 2
    on_error: FailMode = FailMode.CLOSED

    @property
    def kind(self) -> DetectorKind:
        if self.pattern is not None:
            return DetectorKind.PATTERN
        if self.keywords is not None:
            return DetectorKind.KEYWORDS
        assert self.detector is not None  # the validator below guarantees one
        return self.detector

    @property
    def rule_name(self) -> str:
        return self.name or self.kind.value

    @model_validator(mode="after")
    def _one_kind(self) -> GuardrailRule:
        given = [f for f in ("pattern", "keywords") if getattr(self, f) is not None]
        if len(given) > 1:
            raise ValueError("a rule sets one of pattern or keywords, not both")
        if given and self.detector not in (None, DetectorKind(given[0])):
            raise ValueError(f"a rule with {given[0]} has detector {given[0]} (or none)")
        if not given and self.detector is None:
            raise ValueError("a rule sets a detector, a pattern or keywords")
        if self.detector is DetectorKind.MAX_INPUT_TOKENS:
            raise ValueError("max_input_tokens is a profile field: `max_input_tokens: 32000`")
        if not given and self.detector in (DetectorKind.PATTERN, DetectorKind.KEYWORDS):
            raise ValueError(f"detector {self.detector} needs its {self.detector} field")
        if self.pattern is not None:
            problem = pattern_problem(self.pattern)
            if problem is not None:
                raise ValueError(problem)
        if given and self.name is None:
            raise ValueError(f"a {given[0]} rule needs a name")
        if self.kind is DetectorKind.CLASSIFIER:
            self._check_classifier()
        else:
            extra = [f for f in _CLASSIFIER_FIELDS if getattr(self, f) is not None]
            if extra:
                raise ValueError(f"{', '.join(extra)} belong(s) to detector: classifier only")
        return self

    def _check_classifier(self) -> None:
        if (self.provider is None) == (self.url is None):
            raise ValueError("a classifier rule sets exactly one of provider or url")
        if self.url is not None and not re.match(r"^https?://[^\s@]+$", self.url):
            raise ValueError("url must be an http(s) URL without credentials")
        if not self.model:
            raise ValueError("a classifier rule needs a model")
        if self.action is GuardAction.REDACT:
            raise ValueError("a classifier scores a whole text: its action is block or flag")


class GuardrailProfile(_Strict):
    """Rules by where they look: `input`, `output`, or `rules` with their own `where`."""

    input: list[GuardrailRule] = Field(default_factory=list)
    output: list[GuardrailRule] = Field(default_factory=list)
    rules: list[GuardrailRule] = Field(default_factory=list)
    max_input_tokens: Annotated[Integer, Field(gt=0)] | None = None

    def rules_for(self, where: Where) -> list[GuardrailRule]:
        return [rule for _, rule in self.placed_rules(where)]

    def placed_rules(self, where: Where) -> list[tuple[tuple[str, int], GuardrailRule]]:
        """The rules scanned on `where`, in order, each with its list and index in the
        profile (`("input", 0)`, `("rules", 2)`): where an error about it points."""
        listed = self.input if where is Where.INPUT else self.output
        placed = [((where.value, i), rule) for i, rule in enumerate(listed)]
        return placed + [
            (("rules", i), rule)
            for i, rule in enumerate(self.rules)
            if where in (rule.where or (Where.INPUT, Where.OUTPUT))
        ]

    @model_validator(mode="after")
    def _consistent(self) -> GuardrailProfile:
        for side, listed in ((Where.INPUT, self.input), (Where.OUTPUT, self.output)):
            for rule in listed:
                if rule.where is not None and rule.where != [side]:
                    raise ValueError(
                        f"rule {rule.rule_name!r} is listed under {side} but says where: "
                        f"{[w.value for w in rule.where]}; list it under rules: instead"
                    )
        for side in Where:
            names = [r.rule_name for r in self.rules_for(side)]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(
                    f"rule name(s) {', '.join(twice)} used twice on {side}: name each rule"
                )
            if side is Where.OUTPUT and any(
                r.kind is DetectorKind.CLASSIFIER for r in self.rules_for(side)
            ):
                raise ValueError("classifier rules run on input only")
        return self


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
        # Not "whatever ZoneInfo opens": it opens `localtime` (each replica's own zone),
        # `Factory` and `posix/...` too, any file of the tz folder.
        if not is_iana_zone(value):
            raise ValueError(f"unknown timezone {value!r}")
        return value
