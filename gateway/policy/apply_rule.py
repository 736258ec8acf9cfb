"""When a folder may replace the running policy (SPEC §4's apply rule); pure, no I/O.

An explicit apply of a folder, or an edit of the watched folder, goes through
unless the running version holds an admin-API edit or a rollback the folder
has not seen. Each version carries the newest such change it holds ("held"):

- an admin-API change (PUT, PATCH) or a rollback holds itself;
- a folder applied on top of version B holds what B held (it was made from B's
  content, so it carries B's changes and no later one); a folder whose base is
  unknown, and the bootstrap, hold none.

A folder based on B has seen every change up to B, so it conflicts exactly
when the running version holds a change newer than B (or any change, when its
base is unknown).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class PolicyAction(StrEnum):
    """How a version was made: the `action` of its audit entry."""

    BOOTSTRAP = "policy.bootstrap"
    APPLY = "policy.apply"  # a whole bundle through the admin API
    APPLY_FILES = "policy.apply_files"  # a folder: `policy apply DIR` or `serve --policies`
    PATCH_TEAM = "policy.patch_team"
    ROLLBACK = "policy.rollback"


FROM_FILES = frozenset({PolicyAction.BOOTSTRAP, PolicyAction.APPLY_FILES})
FROM_API = frozenset({PolicyAction.APPLY, PolicyAction.PATCH_TEAM, PolicyAction.ROLLBACK})
HELD_KEY = "holds_api_change"  # kept in a folder apply's audit entry (`after`)


@dataclass(frozen=True, slots=True)
class VersionOrigin:
    """How one version was made, as its audit entry tells it."""

    version: int
    action: PolicyAction
    held: int | None = None  # a folder apply's recorded HELD_KEY (None: none, or not recorded)
    has_held: bool = False  # whether the entry records HELD_KEY (entries before this rule do not)


def held_change(origins: Iterable[VersionOrigin], version: int | None) -> int | None:
    """The newest admin-API edit or rollback that `version` holds (None: none).

    A folder apply recorded before this rule existed says nothing; it is taken
    to hold the newest API change made before it, which can only refuse more.
    """
    if version is None:
        return None
    known = {origin.version: origin for origin in origins}
    origin = known.get(version)
    if origin is None or origin.action in FROM_API:
        return version  # unknown history: assume it holds a change, the safe side
    if origin.action is PolicyAction.BOOTSTRAP:
        return None
    if origin.has_held:
        return origin.held
    older = [o.version for o in known.values() if o.action in FROM_API and o.version < version]
    return max(older, default=None)


def is_unseen(held: int | None, base: int | None) -> bool:
    """Whether a folder based on `base` (None: unknown) has not seen the change `held`."""
    return held is not None and (base is None or held > base)
