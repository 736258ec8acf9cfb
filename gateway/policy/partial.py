"""The rest of an invalid bundle's errors: references and secrets in the parts that parsed.

The schema refuses a bundle as a whole, yet its errors are only some of the
bundle's: a bad budget in one team says nothing of an unknown model or a
refused `${VAR}` in another, and `policy check` and `PUT /admin/policy` list
every error (SPEC §1, §5). Here the entries the schema refused are set aside
(a named section's entry, else its whole section), the rest is validated and
compiled for its own issues; a reference to an entry set aside counts as
known, so setting it aside adds no error. The references the entries set aside
make themselves are checked on their raw values (`aside_references.py`). Pure:
no I/O beyond what compiling does (`${file:…}` secrets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from gateway.policy.aside_references import aside_reference_issues
from gateway.policy.compiled import SetAside, reference_issues
from gateway.policy.errors import Path, PolicyIssue
from gateway.policy.loader import NAMED_SECTIONS, LoadedBundle, SchemaInvalid
from gateway.policy.schema import PolicyBundle
from gateway.policy.secrets import read_escapes_beyond_providers


def issues_beyond_schema(invalid: SchemaInvalid, env: Mapping[str, str]) -> list[PolicyIssue]:
    """What compiling finds in the parts of the bundle the schema accepted, and the
    unknown names the parts it refused refer to (`aside_references.py`)."""
    kept, aside = set_aside(invalid.raw, invalid.paths)
    from_aside = aside_reference_issues(invalid.raw, aside, invalid.locate)
    try:
        bundle = PolicyBundle.model_validate(read_escapes_beyond_providers(kept))
    except ValidationError:
        return from_aside  # an error no entry explains (the bundle as a whole)
    return reference_issues(LoadedBundle(bundle, kept, invalid.locate), env, aside) + from_aside


def set_aside(raw: Mapping[str, Any], paths: list[Path]) -> tuple[dict[str, Any], SetAside]:
    """The bundle without the entries (or sections) the schema's error paths fall in."""
    kept = {
        section: dict(value) if section in NAMED_SECTIONS and isinstance(value, dict) else value
        for section, value in raw.items()
    }
    names: dict[str, set[str]] = {}
    sections: set[str] = set()
    for path in paths:
        if not path or not isinstance(path[0], str):
            continue
        section = path[0]
        entries = kept.get(section)
        if len(path) > 1 and str(path[1]) in names.get(section, ()):
            continue  # another error in an entry already set aside
        if (
            section in NAMED_SECTIONS
            and isinstance(entries, dict)
            and len(path) > 1
            and path[1] in entries
        ):
            del entries[path[1]]
            names.setdefault(section, set()).add(str(path[1]))
        elif section in kept:
            del kept[section]
            sections.add(section)
    frozen = {section: frozenset(found) for section, found in names.items()}
    return kept, SetAside(frozen, frozenset(sections))
