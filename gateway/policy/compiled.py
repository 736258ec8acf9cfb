"""A valid bundle compiled into read-only lookup tables for the request path.

Cross-references are checked here (a deployment's provider, a team's models),
and `${VAR}` / `${file:...}` references resolved under the environment's
exposure rules (`secrets.py`); each `api_base` is checked against the upstream
rules (`upstreams.py`) after resolution. A refused or missing reference is an
error naming it, its value is never printed. The rules are read from the same
environment the references resolve from. The compiled `Policy` holds resolved
secrets, so its reprs hide them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from urllib.parse import urlsplit

import orjson

from gateway.guardrails.guards import (
    NO_GUARDS,
    Guards,
    ProfileRefused,
    ProviderEndpoint,
    compile_guards,
)
from gateway.policy.errors import Path, PolicyInvalid, PolicyIssue, format_path
from gateway.policy.loader import LoadedBundle, Locate
from gateway.policy.repeated_issuers import repeated_issuer_issues
from gateway.policy.schema import (
    BackendErrorMode,
    CacheSpec,
    GuardrailProfile,
    IssuerSpec,
    LimitsSpec,
    PerUserSpec,
    PolicyBundle,
    PriceSpec,
    ProviderSpec,
    ProviderType,
    RoutingSpec,
)
from gateway.policy.secrets import (
    ReferenceRules,
    address_spellings,
    redaction_secrets,
    references_beyond_providers,
    resolve_references,
)
from gateway.policy.upstreams import DEFAULT_RULES, UpstreamRules, upstream_refusal
from gateway.usage.pricing import UNKNOWN_PRICES, Price, UnitPrices, deployment_prices

ALL_MODELS = "*"
# Translated types whose only credential is an API key: litellm sends its own
# environment's (ANTHROPIC_API_KEY, GEMINI_API_KEY, GOOGLE_API_KEY) when it gets none.
KEYED_TYPES = frozenset({"anthropic", "gemini"})
# An AWS region name (us-east-1, us-gov-west-1, cn-north-1). litellm splices `region` into
# Bedrock's host name, so anything else could name another host (`evil.com#`).
AWS_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]+")
# Bedrock's own hosts: its regional endpoint (FIPS or not) and an interface VPC endpoint's
# name for it. Only these may get a request signed with the gateway's own AWS identity:
# other names under amazonaws.com (an EC2 instance's public name, a load balancer, an API
# Gateway stage) may be anyone's server.
_BEDROCK_HOST = re.compile(
    rf"(?:[a-z0-9-]+\.)?bedrock-runtime(?:-fips)?\.{AWS_REGION.pattern}"
    r"\.(?:vpce\.)?amazonaws\.com(?:\.cn)?"
)


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    timeout_s: float = 60.0
    attempt_timeout_s: float = 20.0
    retries: int = 2
    cooldown_s: float = 30.0
    failure_threshold: int = 3

    def overridden_by(self, spec: RoutingSpec | None) -> RoutingConfig:
        if spec is None:
            return self
        changes = {
            name: getattr(spec, name)
            for name in self.__dataclass_fields__
            if getattr(spec, name) is not None
        }
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    type: ProviderType
    api_base: str | None = None
    api_version: str | None = None
    region: str | None = None
    # Resolved secrets: excluded from repr so they never reach a log line.
    api_key: str | None = field(default=None, repr=False)
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    # The values its `${...}` references resolved to, in any field (a token in api_base's
    # path, a key): secrets wherever they stand.
    references: tuple[str, ...] = field(default=(), repr=False)
    # Where its connections may go, from the environment the policy was checked in:
    # enforced again on the addresses api_base's host resolves to (providers/resolver.py).
    upstreams: UpstreamRules = field(default=DEFAULT_RULES, repr=False)
    # What every client of this provider cuts out of upstream text (client-facing errors,
    # stream error events, log lines): its keys, its references' values and where
    # api_base points (an internal host:port), made once.
    secrets: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = (self.api_key, self.aws_access_key_id, self.aws_secret_access_key)
        address = address_spellings(self.api_base)
        object.__setattr__(self, "secrets", redaction_secrets((*keys, *self.references, *address)))


@dataclass(frozen=True, slots=True)
class Deployment:
    provider: str
    model: str
    weight: float
    priority: int
    price: Price | None = None  # the deployment's own, else its model's; None: price table
    prices: UnitPrices = UNKNOWN_PRICES  # what it is charged at (policy, else the table)
    # `PROVIDER/UPSTREAM_MODEL`, as the x-gateway-deployment header shows it: made once,
    # read by every header, log line, metric and span of a request.
    label: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", f"{self.provider}/{self.model}")


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How long an exact answer is served again, and how many bytes its entries may hold."""

    ttl_s: int
    max_bytes: int


def _cache(spec: CacheSpec | None) -> CachePolicy | None:
    return None if spec is None else CachePolicy(spec.ttl_s, spec.max_bytes)


@dataclass(frozen=True, slots=True)
class ModelRoute:
    alias: str
    deployments: tuple[Deployment, ...]
    routing: RoutingConfig
    price: Price | None
    cache: CachePolicy | None = None  # the model's own; wins over the team's (cache/rules.py)


class BudgetPeriod(StrEnum):
    """Calendar periods a budget counts over (in the policy's timezone)."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class Budget:
    period: BudgetPeriod
    tokens: int | None
    usd: float | None


def user_budgets(per_user: PerUserSpec | None) -> tuple[Budget, ...]:
    """Each user's own budgets: `tokens_per_day: N` first, as `{period: day, tokens: N}`,
    then `budgets` as written (the schema lets no period and unit repeat)."""
    if per_user is None:
        return ()
    found = [Budget(BudgetPeriod(b.period), b.tokens, b.usd) for b in per_user.budgets]
    if per_user.tokens_per_day is not None:
        found.insert(0, Budget(BudgetPeriod.DAY, per_user.tokens_per_day, None))
    return tuple(found)


@dataclass(frozen=True, slots=True)
class TeamRules:
    name: str
    allows_all_models: bool
    models: frozenset[str]
    clients: frozenset[str] = frozenset()
    budgets: tuple[Budget, ...] = ()
    limits: LimitsSpec | None = None
    per_user: PerUserSpec | None = None
    guardrails: tuple[str, ...] = ()
    guards: Guards = NO_GUARDS  # the profiles above, compiled: one scan per side
    cache: CachePolicy | None = None
    guardrails_hash: str = ""  # the team's profiles and their rules (the cache key's part)
    max_tokens_default: int | None = None  # the output allowance reserved when a request sets none
    log_content: bool = False  # its access lines carry prompt and completion text
    # ("scope unit period", era) of budgets back in force since a version (budget_eras.py)
    budget_eras: tuple[tuple[str, int], ...] = ()

    def allows(self, alias: str) -> bool:
        return self.allows_all_models or alias in self.models


@dataclass(frozen=True, slots=True)
class Policy:
    providers: Mapping[str, ProviderConfig]
    models: Mapping[str, ModelRoute]
    teams: Mapping[str, TeamRules]
    hash: str  # sha256 of the bundle as written (references unresolved)
    issuers: tuple[IssuerSpec, ...] = ()
    guardrails: Mapping[str, GuardrailProfile] = field(default_factory=dict)
    timezone: str = "UTC"
    team_of_client: Mapping[str, str] = field(default_factory=dict)  # OAuth client id → team
    on_backend_error: BackendErrorMode = BackendErrorMode.CLOSED  # limits backend unreachable

    def visible_models(self, team: TeamRules) -> list[str]:
        return [alias for alias in self.models if team.allows(alias)]


def _price(spec: PriceSpec | None) -> Price | None:
    if spec is None:
        return None
    return Price(
        spec.input_per_mtok,
        spec.output_per_mtok,
        spec.cached_input_per_mtok,
        spec.cache_write_per_mtok,
    )


def _resolve(
    value: str | None,
    path: Path,
    env: Mapping[str, str],
    rules: ReferenceRules,
    issues: list[PolicyIssue],
    locate: Locate,
    substituted: list[str],
) -> str | None:
    """Substitute references (their values appended to `substituted`); each refused or
    missing one is an issue, never its value."""
    if value is None:
        return None
    resolved, problems = resolve_references(
        value, str(path[-1]), env, rules, substituted=substituted
    )
    issues.extend(PolicyIssue(locate(path), format_path(path), p) for p in problems)
    return resolved


def _check_api_base(
    written: str, resolved: str, rules: UpstreamRules, path: Path, locate: Locate
) -> PolicyIssue | None:
    """The resolved api_base, checked again: same host as written, and a host it may use."""
    if urlsplit(resolved).netloc != urlsplit(written).netloc or "$" in urlsplit(written).netloc:
        problem = "a reference in api_base changed its host (only the path may come from one)"
    else:
        problem = upstream_refusal(resolved, rules) or ""
    return PolicyIssue(locate(path), format_path(path), problem) if problem else None


def is_bedrock_endpoint(api_base: str | None) -> bool:
    """Whether a keyless Bedrock provider may call `api_base`: unset (litellm's regional
    endpoint), or a URL whose host is one of Bedrock's own (`_BEDROCK_HOST`)."""
    if api_base is None:
        return True
    host = (urlsplit(api_base).hostname or "").rstrip(".")
    return _BEDROCK_HOST.fullmatch(host) is not None


def _credential_issues(name: str, spec: ProviderSpec, locate: Locate) -> list[PolicyIssue]:
    """A translated provider's credentials are its own fields (SPEC §1): litellm fills what
    it is not given from the gateway's environment and sends it wherever api_base points.

    anthropic and gemini need `api_key`; Bedrock's AWS keys come as a pair; a Bedrock
    provider with no key at all signs with the gateway's own AWS identity (an instance or
    IRSA role), so it may call Bedrock's own hosts only."""
    at: Path = ("providers", name)
    if spec.type in KEYED_TYPES and spec.api_key is None:
        problem = (
            f"required for type {spec.type} (${{VAR}} or ${{file:...}}): "
            "the gateway sends no key of its own environment"
        )
        return [PolicyIssue(locate(at), format_path((*at, "api_key")), problem)]
    if spec.type != "bedrock":
        return []
    pair = {
        "aws_access_key_id": spec.aws_access_key_id,
        "aws_secret_access_key": spec.aws_secret_access_key,
    }
    missing = [key for key, value in pair.items() if value is None]
    if len(missing) == 1:
        (given,) = set(pair) - set(missing)
        problem = f"required with {given}: litellm would take it from the gateway's environment"
        return [PolicyIssue(locate(at), format_path((*at, missing[0])), problem)]
    if missing and spec.api_key is None and not is_bedrock_endpoint(spec.api_base):
        base: Path = (*at, "api_base")
        problem = (
            "a bedrock provider without api_key or AWS keys signs with the gateway's own AWS "
            "identity, so api_base must be unset or a Bedrock endpoint "
            "(bedrock-runtime.REGION.amazonaws.com or an interface VPC endpoint's name for it); "
            "give the provider keys of its own to call another host"
        )
        return [PolicyIssue(locate(base), format_path(base), problem)]
    return []


def _region_issue(
    name: str, config: ProviderConfig, issues: Sequence[PolicyIssue], locate: Locate
) -> PolicyIssue | None:
    """A Bedrock `region` that is no AWS region name; none when its reference was refused."""
    path: Path = ("providers", name, "region")
    shown = format_path(path)
    if config.type != "bedrock" or config.region is None or any(i.field == shown for i in issues):
        return None
    if AWS_REGION.fullmatch(config.region):
        return None
    return PolicyIssue(locate(path), shown, "not an AWS region name (such as us-east-1)")


def _environment_rules(
    env: Mapping[str, str], issues: list[PolicyIssue]
) -> tuple[ReferenceRules, UpstreamRules]:
    """The exposure rules; a bad setting is an issue (serve refuses it earlier, at start)."""
    references, upstreams = ReferenceRules(), UpstreamRules(None, None)
    try:
        references = ReferenceRules.from_env(env)
    except ValueError as error:
        issues.append(PolicyIssue("environment", "", str(error)))
    try:
        upstreams = UpstreamRules.from_env(env)
    except ValueError as error:
        issues.append(PolicyIssue("environment", "", str(error)))
    return references, upstreams


def _check_classifier_providers(
    bundle: PolicyBundle,
    providers: Mapping[str, ProviderConfig],
    issues: list[PolicyIssue],
    locate: Locate,
    aside: SetAside,
    upstreams: UpstreamRules,
) -> None:
    """A classifier rule's provider exists and has an endpoint to post to; a rule's own
    `url` is a host the upstream rules allow (prompts are posted there)."""
    for name, profile in bundle.guardrails.items():
        for side in ("input", "output", "rules"):
            for i, rule in enumerate(getattr(profile, side)):
                refused = rule.url and upstream_refusal(rule.url, upstreams, field="url")
                if refused:
                    url_path: Path = ("guardrails", name, side, i, "url")
                    issues.append(PolicyIssue(locate(url_path), format_path(url_path), refused))
                if rule.provider is None or aside.holds("providers", rule.provider):
                    continue
                config = providers.get(rule.provider)
                problem = None
                if config is None:
                    problem = f"unknown provider {rule.provider!r} (not in providers)"
                elif config.api_base is None:
                    problem = f"provider {rule.provider!r} has no api_base to classify with"
                if problem is not None:
                    path: Path = ("guardrails", name, side, i, "provider")
                    issues.append(PolicyIssue(locate(path), format_path(path), problem))


def _with_guards(
    bundle: PolicyBundle,
    teams: dict[str, TeamRules],
    providers: Mapping[str, ProviderConfig],
    issues: list[PolicyIssue],
    locate: Locate,
) -> dict[str, TeamRules]:
    """Each team's profiles compiled into one `Guards`; teams naming the same list share it.
    A rule RE2 will not compile is an issue at that rule (each reported once)."""
    endpoints = {n: ProviderEndpoint(p.api_base, p.api_key) for n, p in providers.items()}
    compiled: dict[tuple[str, ...], Guards] = {}
    out: dict[str, TeamRules] = {}
    for name, team in teams.items():
        if not team.guardrails:
            out[name] = team
            continue
        guards = compiled.get(team.guardrails)
        if guards is None:
            profiles = [(p, bundle.guardrails[p]) for p in team.guardrails]
            try:
                guards = compile_guards(profiles, endpoints)
            except ProfileRefused as refused:
                issue = PolicyIssue(locate(refused.path), format_path(refused.path), refused.why)
                if issue not in issues:  # two teams' lists may share the profile
                    issues.append(issue)
                guards = NO_GUARDS  # never enforced: the issue refuses the bundle
            compiled[team.guardrails] = guards
        out[name] = replace(team, guards=guards)
    return out


def guardrails_hash(names: Sequence[str], profiles: Mapping[str, GuardrailProfile]) -> str:
    """sha256 of a team's guardrail profiles in order, with their rules: editing a rule
    changes it, so cached answers shaped by the old rules become unreachable."""
    shown = [[n, p.model_dump(mode="json") if (p := profiles.get(n)) else None] for n in names]
    return hashlib.sha256(orjson.dumps(shown, option=orjson.OPT_SORT_KEYS)).hexdigest()


def bundle_hash(raw: Mapping[str, object]) -> str:
    return hashlib.sha256(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class SetAside:
    """Entries of an invalid bundle its schema check refused (`partial.py`): they exist, so
    a reference to one is not reported as unknown. A whole section set aside holds any name."""

    names: Mapping[str, frozenset[str]] = field(default_factory=dict)
    sections: frozenset[str] = frozenset()

    def holds(self, section: str, name: str) -> bool:
        return section in self.sections or name in self.names.get(section, ())


NOTHING_ASIDE = SetAside()


def compile_policy(loaded: LoadedBundle, env: Mapping[str, str]) -> Policy:
    """Check cross-references, resolve secrets; raise PolicyInvalid with every issue.

    Arithmetic that fails on a value the schema let through is an issue too, never
    a traceback."""
    try:
        return _compile(loaded, env, NOTHING_ASIDE)
    except (ArithmeticError, ValueError) as error:
        issue = PolicyIssue(loaded.locate(()), "", f"cannot compile the policy: {error}")
        raise PolicyInvalid([issue]) from None


def reference_issues(
    loaded: LoadedBundle, env: Mapping[str, str], aside: SetAside
) -> list[PolicyIssue]:
    """The issues compiling finds in a bundle some of whose entries were set aside
    (references to those count as known); nothing is compiled for use."""
    try:
        _compile(loaded, env, aside)
    except PolicyInvalid as invalid:
        return invalid.issues
    except (ArithmeticError, ValueError):
        return []  # the full compile reports it once the schema errors are fixed
    return []


def _compile(loaded: LoadedBundle, env: Mapping[str, str], aside: SetAside) -> Policy:
    bundle: PolicyBundle = loaded.bundle
    issues: list[PolicyIssue] = []
    references, upstreams = _environment_rules(env, issues)
    issues.extend(
        PolicyIssue(loaded.locate(path), format_path(path), problem)
        for path, problem in references_beyond_providers(loaded.raw)
    )

    providers: dict[str, ProviderConfig] = {}
    for name, spec in bundle.providers.items():
        substituted: list[str] = []

        def resolved(
            attr: str, *, _name: str = name, _spec: object = spec, _into: list[str] = substituted
        ) -> str | None:
            path = ("providers", _name, attr)
            value = getattr(_spec, attr)
            return _resolve(value, path, env, references, issues, loaded.locate, _into)

        providers[name] = ProviderConfig(
            name=name,
            type=spec.type,
            api_base=resolved("api_base"),
            api_version=resolved("api_version"),
            region=resolved("region"),
            api_key=resolved("api_key"),
            aws_access_key_id=resolved("aws_access_key_id"),
            aws_secret_access_key=resolved("aws_secret_access_key"),
            references=tuple(substituted),
            upstreams=upstreams,
        )
        api_base = providers[name].api_base
        if spec.api_base is not None and api_base is not None:
            base_path: Path = ("providers", name, "api_base")
            refused = _check_api_base(spec.api_base, api_base, upstreams, base_path, loaded.locate)
            if refused is not None:
                issues.append(refused)
        issues.extend(_credential_issues(name, spec, loaded.locate))
        region_issue = _region_issue(name, providers[name], issues, loaded.locate)
        if region_issue is not None:
            issues.append(region_issue)
        if spec.type in ("openai-compatible", "azure") and not spec.api_base:
            issues.append(
                PolicyIssue(
                    loaded.locate(("providers", name)),
                    f"providers.{name}.api_base",
                    f"required for type {spec.type}",
                )
            )
        if spec.type == "azure" and not spec.api_version:
            issues.append(
                PolicyIssue(
                    loaded.locate(("providers", name)),
                    f"providers.{name}.api_version",
                    "required for type azure",
                )
            )

    defaults = RoutingConfig().overridden_by(bundle.routing)
    models: dict[str, ModelRoute] = {}
    for alias, model in bundle.models.items():
        for i, dep in enumerate(model.deployments):
            if dep.provider not in bundle.providers and not aside.holds("providers", dep.provider):
                path: Path = ("models", alias, "deployments", i, "provider")
                issues.append(
                    PolicyIssue(
                        loaded.locate(path),
                        format_path(path),
                        f"unknown provider {dep.provider!r} (not in providers)",
                    )
                )
        alias_price = _price(model.price)
        deployments = []
        for i, d in enumerate(model.deployments):
            price = _price(d.price) or alias_price
            provider = bundle.providers.get(d.provider)
            provider_type = provider.type if provider is not None else ""
            try:
                prices = deployment_prices(price, d.model, provider_type)
            except (ArithmeticError, ValueError) as error:
                # The schema admits finite prices only; whatever else cannot be priced is
                # an issue at the deployment, never a traceback.
                price_path: Path = ("models", alias, "deployments", i)
                issues.append(
                    PolicyIssue(
                        loaded.locate(price_path),
                        format_path((*price_path, "price")),
                        f"cannot be priced: {error}",
                    )
                )
                prices = UNKNOWN_PRICES
            deployments.append(Deployment(d.provider, d.model, d.weight, d.priority, price, prices))
        models[alias] = ModelRoute(
            alias=alias,
            deployments=tuple(deployments),
            routing=defaults.overridden_by(model.routing),
            price=alias_price,
            cache=_cache(model.cache),
        )

    teams: dict[str, TeamRules] = {}
    team_of_client: dict[str, str] = {}
    for name, team in bundle.teams.items():
        for i, alias in enumerate(team.models):
            if alias != ALL_MODELS and not (alias in bundle.models or aside.holds("models", alias)):
                team_path: Path = ("teams", name, "models", i)
                issues.append(
                    PolicyIssue(
                        loaded.locate(team_path), format_path(team_path), f"unknown model {alias!r}"
                    )
                )
        for i, profile in enumerate(team.guardrails):
            if profile not in bundle.guardrails and not aside.holds("guardrails", profile):
                guard_path: Path = ("teams", name, "guardrails", i)
                issues.append(
                    PolicyIssue(
                        loaded.locate(guard_path),
                        format_path(guard_path),
                        f"unknown guardrail profile {profile!r} (not in guardrails)",
                    )
                )
        for i, client in enumerate(team.clients):
            owner = team_of_client.setdefault(client, name)
            if owner != name:
                client_path: Path = ("teams", name, "clients", i)
                issues.append(
                    PolicyIssue(
                        loaded.locate(client_path),
                        format_path(client_path),
                        f"client {client!r} already belongs to team {owner!r}",
                    )
                )
        teams[name] = TeamRules(
            name=name,
            allows_all_models=ALL_MODELS in team.models,
            models=frozenset(team.models) - {ALL_MODELS},
            clients=frozenset(team.clients),
            budgets=tuple(Budget(BudgetPeriod(b.period), b.tokens, b.usd) for b in team.budgets),
            limits=team.limits,
            per_user=team.per_user,
            guardrails=tuple(team.guardrails),
            cache=_cache(team.cache),
            guardrails_hash=guardrails_hash(team.guardrails, bundle.guardrails),
            max_tokens_default=team.max_tokens_default,
            log_content=team.log_content,
        )

    for i, issuer in enumerate(bundle.auth.issuers):
        # The gateway fetches keys from there (or discovers them at the issuer) when any
        # caller presents a token naming this issuer: the upstream rules bound it too.
        fetched_field = "jwks_uri" if issuer.jwks_uri is not None else "issuer"
        fetched = issuer.jwks_uri if issuer.jwks_uri is not None else issuer.issuer
        refusal = upstream_refusal(fetched, upstreams, field=fetched_field, check_listener=False)
        if refusal is not None:
            fetched_path: Path = ("auth", "issuers", i, fetched_field)
            issues.append(
                PolicyIssue(loaded.locate(fetched_path), format_path(fetched_path), refusal)
            )
        beyond = sorted(set(issuer.default_scopes) - set(issuer.allowed_scopes))
        if beyond:
            scopes_path: Path = ("auth", "issuers", i, "default_scopes")
            issues.append(
                PolicyIssue(
                    loaded.locate(scopes_path),
                    format_path(scopes_path),
                    f"{', '.join(beyond)} not in allowed_scopes "
                    f"({', '.join(issuer.allowed_scopes) or 'none'}): "
                    "an issuer grants nothing beyond its allowed_scopes",
                )
            )
        for value, team_name in (issuer.team_map or {}).items():
            if team_name not in bundle.teams and not aside.holds("teams", team_name):
                map_path: Path = ("auth", "issuers", i, "team_map", value)
                issues.append(
                    PolicyIssue(
                        loaded.locate(map_path),
                        format_path(map_path),
                        f"unknown team {team_name!r}",
                    )
                )

    issuers = enumerate(issuer.issuer for issuer in bundle.auth.issuers)
    issues.extend(repeated_issuer_issues(issuers, loaded.locate))
    _check_classifier_providers(bundle, providers, issues, loaded.locate, aside, upstreams)
    if issues or aside is not NOTHING_ASIDE:  # a bundle with parts set aside is never used
        raise PolicyInvalid(issues)
    teams = _with_guards(bundle, teams, providers, issues, loaded.locate)
    if issues:
        raise PolicyInvalid(issues)
    return Policy(
        providers=MappingProxyType(providers),
        models=MappingProxyType(models),
        teams=MappingProxyType(teams),
        hash=bundle_hash(loaded.raw),
        issuers=tuple(bundle.auth.issuers),
        guardrails=MappingProxyType(dict(bundle.guardrails)),
        timezone=bundle.timezone,
        team_of_client=MappingProxyType(team_of_client),
        on_backend_error=bundle.limits.on_backend_error,
    )
