"""What a change does to a bundle: JSON merge patches and the before/after the audit keeps.

Pure functions over plain JSON values; no I/O, no validation (the service
validates the result like any other bundle).
"""

from __future__ import annotations

import copy
from typing import Any

# Sections made of named entries: the audit names the entries that changed, not the section.
NAMED_SECTIONS = ("providers", "models", "teams", "guardrails")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, `null` deletes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# What PATCH /admin/teams/{team} may change (SPEC §5: a team's quotas, limits or models).
# Who may call as the team (clients), what it is scanned for (guardrails), whether its text
# is logged or cached go through a whole bundle: PUT /admin/policy or a policy file.
PATCHABLE_TEAM_FIELDS = ("models", "budgets", "limits", "per_user", "max_tokens_default")


def unpatchable_team_fields(changes: dict[str, Any]) -> list[str]:
    """The names `changes` holds that PATCH may not change: another team field, or a name
    no team has (`Models`, a typo), in the order they were written."""
    return [f for f in changes if f not in PATCHABLE_TEAM_FIELDS]


def patch_team(bundle: dict[str, Any], team: str, changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of `bundle` with `changes` merge-patched into `teams.<team>`."""
    patched = copy.deepcopy(bundle)
    teams = patched.setdefault("teams", {})
    teams[team] = merge_patch(teams.get(team, {}), changes)
    return patched


def changed_parts(
    old: dict[str, Any] | None, new: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(before, after): only what differs, by section, and by entry in named sections.

    An entry or section absent on one side is absent from that side's dict, so
    `before` of an addition and `after` of a removal are empty. Values are the
    bundle as written, so no resolved secret can appear.
    """
    old, new = old or {}, new or {}
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for section in dict.fromkeys([*old, *new]):
        was, now = old.get(section), new.get(section)
        if was == now:
            continue
        if (
            section in NAMED_SECTIONS
            and isinstance(was or {}, dict)
            and isinstance(now or {}, dict)
        ):
            was_entries, now_entries = was or {}, now or {}
            for name in dict.fromkeys([*was_entries, *now_entries]):
                if was_entries.get(name) == now_entries.get(name):
                    continue
                if name in was_entries:
                    before.setdefault(section, {})[name] = was_entries[name]
                if name in now_entries:
                    after.setdefault(section, {})[name] = now_entries[name]
            continue
        if section in old:
            before[section] = was
        if section in new:
            after[section] = now
    return before, after
