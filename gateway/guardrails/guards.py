"""The profile compiler: a team's guardrail profiles → one `Guards`, at policy load.

All the text rules of a side (input, output), from every profile the team names,
go into one `Scanner` (one combined pass). Classifier rules and the token limit
are kept beside it. Compiled once per distinct list of profiles and shared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.guardrails.kinds import DetectorKind, FailMode, GuardAction, Where
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
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
    """Assumes the cross-references were checked (compiled.py reports them)."""
    sides: dict[Where, list[RuleSource]] = {Where.INPUT: [], Where.OUTPUT: []}
    classifiers: list[ClassifierRule] = []
    limits: list[int] = []
    for _, profile in profiles:
        for side in Where:
            for spec in profile.rules_for(side):
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
                    sides[side].append(_source(spec))
        if profile.max_input_tokens is not None:
            limits.append(profile.max_input_tokens)
    return Guards(
        profiles=tuple(name for name, _ in profiles),
        input=Scanner(sides[Where.INPUT]),
        output=Scanner(sides[Where.OUTPUT]),
        max_input_tokens=min(limits) if limits else None,
        classifiers=tuple(classifiers),
    )


NO_GUARDS = Guards((), Scanner(()), Scanner(()))
TOKEN_LIMIT_RULE = Rule("max_input_tokens", DetectorKind.MAX_INPUT_TOKENS, GuardAction.BLOCK)
