"""The profile compiler: a team's guardrail profiles → one `Guards`, at policy load.

All the text rules of a side (input, output), from every profile the team names,
go into one `Scanner` (one combined pass). Classifier rules and the token limit
are kept beside it. Compiled once per distinct list of profiles and shared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.guardrails.kinds import DetectorKind, FailMode, GuardAction, Where
from gateway.guardrails.patterns import keywords_problem
from gateway.guardrails.scanner import Rule, RuleSource, RulesRefused, Scanner
from gateway.policy.errors import Path
from gateway.policy.schema import GuardrailProfile, GuardrailRule

DEFAULT_THRESHOLD = 0.5
DEFAULT_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class ClassifierRule:
    """An external model scores the request's text; at or over `threshold` it fires."""

    rule: Rule
    url: str  # the moderations endpoint: the rule's url, or its provider's api_base
    model: str
    threshold: float
    timeout_s: float
    on_error: FailMode
    api_key: str | None = field(default=None, repr=False)  # the provider's, resolved


@dataclass(frozen=True, slots=True)
class Guards:
    profiles: tuple[str, ...]
    input: Scanner
    output: Scanner
    max_input_tokens: int | None = None
    classifiers: tuple[ClassifierRule, ...] = ()

    @property
    def checks_input(self) -> bool:
        return not self.input.is_empty or bool(self.classifiers) or bool(self.max_input_tokens)

    @property
    def checks_output(self) -> bool:
        return not self.output.is_empty


def _rule(spec: GuardrailRule) -> Rule:
    return Rule(spec.rule_name, spec.kind, spec.action)


def _source(spec: GuardrailRule) -> RuleSource:
    return RuleSource(_rule(spec), spec.pattern, tuple(spec.keywords or ()))


class ProfileRefused(Exception):
    """RE2 would not compile a rule (or a side's rules together): `path` is the rule's
    field in the bundle, e.g. `("guardrails", "strict", "input", 0, "keywords")`."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(why)
        self.path = path
        self.why = why


def _field(spec: GuardrailRule) -> str:
    return "pattern" if spec.pattern is not None else "keywords" if spec.keywords else "detector"


def _scanner(sources: list[RuleSource], places: list[Path], *, holds_back: bool) -> Scanner:
    try:
        return Scanner(sources, holds_back=holds_back)
    except RulesRefused as refused:
        raise ProfileRefused(places[refused.position], refused.why) from None


@dataclass(frozen=True, slots=True)
class ProviderEndpoint:
    """What a classifier rule needs of a provider: where it is, and its key."""

    api_base: str | None
    api_key: str | None = field(default=None, repr=False)


def classifier_url(spec: GuardrailRule, providers: Mapping[str, ProviderEndpoint]) -> str | None:
    """The endpoint a classifier rule posts to (None: its provider has no api_base)."""
    if spec.url is not None:
        return spec.url
    provider = providers.get(spec.provider or "")
    if provider is None or provider.api_base is None:
        return None
    return provider.api_base.rstrip("/") + "/moderations"


def compile_guards(
    profiles: Sequence[tuple[str, GuardrailProfile]],
    providers: Mapping[str, ProviderEndpoint],
) -> Guards:
    """Assumes the cross-references were checked (compiled.py reports them). Raises
    ProfileRefused when RE2 will not compile a rule (or a side's rules together)."""
    sides: dict[Where, list[RuleSource]] = {Where.INPUT: [], Where.OUTPUT: []}
    places: dict[Where, list[Path]] = {Where.INPUT: [], Where.OUTPUT: []}
    classifiers: list[ClassifierRule] = []
    limits: list[int] = []
    for profile_name, profile in profiles:
        for side in Where:
            for place, spec in profile.placed_rules(side):
                if spec.kind is DetectorKind.CLASSIFIER:
                    provider = providers.get(spec.provider or "")
                    classifiers.append(
                        ClassifierRule(
                            _rule(spec),
                            classifier_url(spec, providers) or "",
                            spec.model or "",
                            DEFAULT_THRESHOLD if spec.threshold is None else spec.threshold,
                            spec.timeout_s or DEFAULT_TIMEOUT_S,
                            spec.on_error,
                            provider.api_key if provider is not None else None,
                        )
                    )
                else:
                    path: Path = ("guardrails", profile_name, *place, _field(spec))
                    # Checked before any compile: RE2 would hold the GIL while it fails.
                    problem = keywords_problem(spec.keywords) if spec.keywords else None
                    if problem is not None:
                        raise ProfileRefused(path, problem)
                    sides[side].append(_source(spec))
                    places[side].append(path)
        if profile.max_input_tokens is not None:
            limits.append(profile.max_input_tokens)
    return Guards(
        profiles=tuple(name for name, _ in profiles),
        # Input is scanned whole, never held back: no tail search to build (for a long
        # keyword list, most of the compile).
        input=_scanner(sides[Where.INPUT], places[Where.INPUT], holds_back=False),
        output=_scanner(sides[Where.OUTPUT], places[Where.OUTPUT], holds_back=True),
        max_input_tokens=min(limits) if limits else None,
        classifiers=tuple(classifiers),
    )


NO_GUARDS = Guards((), Scanner(()), Scanner(()))
TOKEN_LIMIT_RULE = Rule("max_input_tokens", DetectorKind.MAX_INPUT_TOKENS, GuardAction.BLOCK)
