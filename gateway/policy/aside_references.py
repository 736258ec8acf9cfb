"""References made by the entries the schema refused, checked on the raw YAML.

`partial.py` sets each entry the schema refused aside and compiles the rest, so
the references the refused entry makes itself (a team's models and guardrail
profiles, a model's deployment providers, a classifier rule's provider, an
issuer's `team_map`) would go unchecked until its schema errors were fixed: a
team with `rpm: "many"` hid its unknown model. Here those references are read
from the raw values. A reference is checked only where it is a string in a list
or mapping of the shape the schema expects; a malformed part is skipped (the
schema has named it), never guessed at.

A name is defined when its section holds it in the raw bundle, whatever the
schema thought of its definition, and a section too malformed to list names holds
any (the rule of `SetAside.holds`), so no reference is called unknown because
its target was refused. The messages are `compiled.py`'s, so an error reads the
same whichever pass finds it. An issuer listed twice in a refused `auth` is
reported here too (`repeated_issuers.py`). Pure: plain values in, issues out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from gateway.policy.compiled import ALL_MODELS, SetAside
from gateway.policy.errors import Path, PolicyIssue, format_path
from gateway.policy.loader import Locate
from gateway.policy.repeated_issuers import repeated_issuer_issues

_RULE_SIDES = ("input", "output", "rules")


def aside_reference_issues(
    raw: Mapping[str, Any], aside: SetAside, locate: Locate
) -> list[PolicyIssue]:
    """Unknown names referred to from the entries (and `auth`) that `aside` set aside."""
    issues: list[PolicyIssue] = []

    def defined(section: str, name: str) -> bool:
        return _is_defined(raw, aside, section, name)

    def report(path: Path, message: str) -> None:
        issues.append(PolicyIssue(locate(path), format_path(path), message))

    for alias, model in _aside_entries(raw, aside, "models"):
        for i, deployment in _listed(model, "deployments"):
            provider = deployment.get("provider") if isinstance(deployment, dict) else None
            if isinstance(provider, str) and not defined("providers", provider):
                path: Path = ("models", alias, "deployments", i, "provider")
                report(path, f"unknown provider {provider!r} (not in providers)")

    for name, team in _aside_entries(raw, aside, "teams"):
        for i, alias in _listed(team, "models"):
            if isinstance(alias, str) and alias != ALL_MODELS and not defined("models", alias):
                report(("teams", name, "models", i), f"unknown model {alias!r}")
        for i, profile in _listed(team, "guardrails"):
            if isinstance(profile, str) and not defined("guardrails", profile):
                message = f"unknown guardrail profile {profile!r} (not in guardrails)"
                report(("teams", name, "guardrails", i), message)

    for name, profile in _aside_entries(raw, aside, "guardrails"):
        for side in _RULE_SIDES:
            for i, rule in _listed(profile, side):
                problem = _classifier_provider_problem(raw, aside, rule)
                if problem is not None:
                    report(("guardrails", name, side, i, "provider"), problem)

    if "auth" in aside.sections:  # not a named section: one error sets all of it aside
        auth = raw.get("auth")
        named = [(i, e["issuer"]) for i, e in _listed(auth, "issuers") if _issuer_named(e)]
        issues.extend(repeated_issuer_issues(named, locate))
        for i, issuer in _listed(auth, "issuers"):
            team_map = issuer.get("team_map") if isinstance(issuer, dict) else None
            if not isinstance(team_map, dict):
                continue
            for value, team_name in team_map.items():
                if isinstance(team_name, str) and not defined("teams", team_name):
                    report(("auth", "issuers", i, "team_map", value), f"unknown team {team_name!r}")
    return issues


def _issuer_named(entry: Any) -> bool:
    """Whether an issuer entry as written names its issuer with a string."""
    return isinstance(entry, dict) and isinstance(entry.get("issuer"), str)


def _is_defined(raw: Mapping[str, Any], aside: SetAside, section: str, name: str) -> bool:
    """Whether the bundle as written defines `name` in `section`, well-formed or not."""
    entries = raw.get(section)
    return (isinstance(entries, dict) and name in entries) or section in aside.sections


def _aside_entries(
    raw: Mapping[str, Any], aside: SetAside, section: str
) -> Iterator[tuple[str, Any]]:
    """The section's entries that were set aside: all of them when the section was."""
    entries = raw.get(section)
    if not isinstance(entries, dict):
        return
    for name, entry in entries.items():
        if section in aside.sections or name in aside.names.get(section, ()):
            yield name, entry


def _listed(entry: Any, key: str) -> Iterator[tuple[int, Any]]:
    """The items of `entry[key]` with their indexes, when the entry and the value have
    the expected shape (a mapping holding a list); nothing otherwise."""
    value = entry.get(key) if isinstance(entry, dict) else None
    if isinstance(value, list):
        yield from enumerate(value)


def _classifier_provider_problem(raw: Mapping[str, Any], aside: SetAside, rule: Any) -> str | None:
    """What is wrong with a classifier rule's provider: unknown, or known with no api_base.

    Only a rule that says `detector: classifier` is judged: on any other rule a
    `provider` is a schema error already, and whether it names a provider is beside it.
    A provider that was itself set aside is not judged for its api_base."""
    if not isinstance(rule, dict) or rule.get("detector") != "classifier":
        return None
    provider = rule.get("provider")
    if not isinstance(provider, str):
        return None
    if not _is_defined(raw, aside, "providers", provider):
        return f"unknown provider {provider!r} (not in providers)"
    if aside.holds("providers", provider):
        return None
    spec = raw["providers"][provider]
    if isinstance(spec, dict) and spec.get("api_base") is None:
        return f"provider {provider!r} has no api_base to classify with"
    return None
