"""A bundle checked and compiled, ready to become a version: from JSON or from a folder.

Validation only (schema, then cross-references and `${VAR}`s with the given
environment); raises PolicyInvalid with every issue located (file:line for a
folder, "bundle" or "policy version N" otherwise). No database, no decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.policy import bundle_text
from gateway.policy.budget_eras import with_eras
from gateway.policy.compiled import Policy, bundle_hash, compile_policy
from gateway.policy.errors import PolicyInvalid
from gateway.policy.folder_limits import export_issues
from gateway.policy.loader import LoadedBundle, SchemaInvalid, load_bundle, validate_bundle
from gateway.policy.own_issuer import own_issuer, own_issuer_issues
from gateway.policy.partial import issues_beyond_schema
from gateway.policy.versions import PolicyVersion

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A bundle that passed every check, ready to become a version."""

    raw: dict[str, Any]  # canonical JSON, as written
    policy: Policy  # compiled with this process's environment

    @property
    def hash(self) -> str:
        return self.policy.hash


def candidate_from_raw(
    raw: Mapping[str, Any], env: Mapping[str, str], where: str = "bundle"
) -> Candidate:
    """Check a bundle given as JSON; raise PolicyInvalid with every issue, located at `where`."""
    return _from_raw(raw, env, where, own_issuer(env))


def _from_raw(
    raw: Mapping[str, Any], env: Mapping[str, str], where: str, own: str | None
) -> Candidate:
    plain = bundle_text.canonical(dict(raw), where)

    def locate(_path: object) -> str:
        return where

    bundle = _validated(lambda: validate_bundle(plain, locate), env, own)
    return Candidate(plain, _compiled(LoadedBundle(bundle, plain, locate), env, own))


def candidate_for_folders(
    raw: Mapping[str, Any], env: Mapping[str, str], where: str = "bundle"
) -> Candidate:
    """`candidate_from_raw`, refused also when no policy folder could hold it (an entry past
    the loader's limits even in a file of its own): what the admin API takes must
    export, check and apply back, and fit a folder `serve --policies` rewrites."""
    candidate = candidate_from_raw(raw, env, where)
    issues = export_issues(candidate.raw, where)
    if issues:
        raise PolicyInvalid(issues)
    return candidate


def candidate_from_folder(directory: Path, env: Mapping[str, str]) -> Candidate:
    """Check a bundle folder; raise PolicyInvalid with every issue as file:line."""
    own = own_issuer(env)
    loaded = _validated(lambda: load_bundle(directory), env, own)
    plain = bundle_text.canonical(loaded.raw, str(directory))
    bundle = loaded.bundle
    if plain != loaded.raw:
        # What is stored is what runs: a value JSON holds differently (a date, a number
        # JSON cannot hold) is checked again as it will be stored and loaded back.
        bundle = _validated(lambda: validate_bundle(plain, loaded.locate), env, own)
    return Candidate(plain, _compiled(LoadedBundle(bundle, plain, loaded.locate), env, own))


def folder_content(directory: Path) -> tuple[dict[str, Any], str]:
    """A folder's bundle as it would be stored, and its hash, checked against the schema
    only (no `${VAR}` resolved): whether it equals a stored version this process cannot
    compile. Raises PolicyInvalid when the schema refuses it."""
    plain = bundle_text.canonical(load_bundle(directory).raw, str(directory))
    return plain, bundle_hash(plain)


def _validated(validate: Callable[[], T], env: Mapping[str, str], own: str | None) -> T:
    """`validate()`; when the schema refuses the bundle, its issues and those compiling
    finds in the rest of it (`partial.py`), so one check lists every error."""
    try:
        return validate()
    except SchemaInvalid as invalid:
        beyond = issues_beyond_schema(invalid, env)
        own_entries = own_issuer_issues(invalid.raw, own, invalid.locate)
        raise PolicyInvalid(invalid.issues + beyond + own_entries) from None


def _compiled(loaded: LoadedBundle, env: Mapping[str, str], own: str | None) -> Policy:
    """`compile_policy`, refused also for an `auth.issuers` entry naming `own`, the
    gateway's own issuer (own_issuer.py), listed with compiling's issues."""
    own_entries = own_issuer_issues(loaded.raw, own, loaded.locate)
    try:
        policy = compile_policy(loaded, env)
    except PolicyInvalid as invalid:
        raise PolicyInvalid(invalid.issues + own_entries) from None
    if own_entries:
        raise PolicyInvalid(own_entries)
    return policy


def compile_version(version: PolicyVersion, env: Mapping[str, str]) -> Policy:
    """A stored version as it is enforced: its budgets' eras included (budget_eras.py).

    An entry naming the gateway's own issuer is not refused here: a version stored
    before that rule keeps running (the authenticator ignores the entry, with a warning)."""
    where = f"policy version {version.version}"
    policy = _from_raw(version.bundle, env, where, None).policy
    return with_eras(policy, version.budget_eras)
