"""The running policy: one compiled version, swapped whole, read without locks.

Readers call `current()` once per request and use that object throughout, so a
swap mid-request never mixes two versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from gateway.policy.candidate import candidate_from_folder
from gateway.policy.compiled import Policy


def load_policy_dir(directory: Path, env: Mapping[str, str]) -> Policy:
    """Load, validate and compile a bundle folder as `apply` would store it; raise
    PolicyInvalid with every issue (`policy check`)."""
    return candidate_from_folder(directory, env).policy


class PolicyStore:
    def __init__(self, policy: Policy, version: int | None = None, created_at: int = 0) -> None:
        self._policy = policy
        self.version = version  # the database version `policy` was compiled from
        # When that version was written (Unix seconds): the same on every replica and
        # across restarts, so /v1/models' `created` is too.
        self.created_at = created_at
        # Why a newer stored version cannot be enforced here (None: none is waiting). While
        # set, this replica enforces an older version than the others: /readyz is 503.
        self.behind: str | None = None

    def current(self) -> Policy:
        return self._policy

    def swap(
        self, policy: Policy, version: int | None = None, created_at: int | None = None
    ) -> None:
        # Plain assignments with no await between: no coroutine sees a mix.
        self._policy = policy
        self.version = version
        if created_at is not None:
            self.created_at = created_at
        self.behind = None

    def cannot_enforce(self, version: int, reason: str) -> None:
        """Record that the newer stored `version` cannot be enforced here, and why."""
        self.behind = f"version {version} cannot be enforced here: {reason}"
