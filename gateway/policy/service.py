"""The one way the policy changes: shared by the CLI, the admin API and `serve`'s sync.

Owns SPEC §4's rules. A change is validated (schema, then compiled with this
process's environment, every error located) before anything is written; it
becomes version N+1 under a cross-process lock, so two replicas never both
create N+1; a bundle equal to the running one (same hash) is a no-op; a change
based on a version other than the running one is refused with `PolicyConflict`,
whose message says how to resolve it; every new version writes its audit entry
in the same transaction. It never renders HTTP or prints: edges do that.

A folder's base version is its marker's (`.policy-version`, written by export
and apply); a folder without one is based on the stored version it equals, if
any, else on the newest version made from files (bootstrap or a folder apply),
so a change made since through the API or a rollback makes it stale.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit import AuditEntry, audit_log, read_audit, record_audit
from gateway.db import locked_transaction
from gateway.errors import GatewayError, NotFound
from gateway.policy import bundle_text, changes
from gateway.policy.candidate import (
    Candidate,
    candidate_from_folder,
    candidate_from_raw,
    compile_version,
)
from gateway.policy.compiled import Policy
from gateway.policy.versions import (
    PolicyVersion,
    insert_version,
    newest_version_number,
    policy_versions,
    read_history,
    read_newest,
    read_version,
)

LOCK_NAME = "gateway:policy_versions"
ACTION_BOOTSTRAP = "policy.bootstrap"
ACTION_APPLY = "policy.apply"  # a whole bundle through the admin API
ACTION_APPLY_FILES = "policy.apply_files"  # a folder: `policy apply DIR` or `serve --policies`
ACTION_PATCH_TEAM = "policy.patch_team"
ACTION_ROLLBACK = "policy.rollback"
FROM_FILES = (ACTION_BOOTSTRAP, ACTION_APPLY_FILES)
# Folder applies looked back through to find a folder's last version; a folder
# not applied among the last this many is treated as unknown (and refused).
FOLDER_HISTORY_SCAN = 1000


class PolicyConflict(GatewayError):
    """409: the change was made against a version that is no longer the running one."""

    status = 409
    type = "invalid_request_error"
    code = "policy_conflict"

    def __init__(self, message: str, *, running: int | None, base: int | None) -> None:
        super().__init__(message, param="base_version")
        self.running = running
        self.base = base


class VersionNotFound(NotFound):
    code = "policy_version_not_found"


@dataclass(frozen=True, slots=True)
class Applied:
    version: PolicyVersion  # the running version after the call
    previous: int | None  # the running version before it
    is_new: bool  # False: the bundle equalled the running one and nothing was written


@dataclass(frozen=True, slots=True)
class FolderPlan:
    """What `apply DIR` would do: the diff against the running version, and the folder's base."""

    running: PolicyVersion | None
    base: int | None
    diff: str

    @property
    def is_stale(self) -> bool:
        return bool(self.diff) and self.running is not None and self.base != self.running.version


def describe(version: PolicyVersion) -> str:
    when = version.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    why = f": {version.reason!r}" if version.reason else ""
    return f"version {version.version} by {version.author} at {when}{why}"


def folder_conflict(directory: Path, running: PolicyVersion, base: int | None) -> PolicyConflict:
    basis = (
        f"is based on version {base}"
        if base is not None
        else f"does not say which version it is based on (no {bundle_text.MARKER_NAME})"
    )
    return PolicyConflict(
        f"Refused: {directory} {basis}, but the running policy is {describe(running)}. "
        "Applying the folder would silently undo that change. To resolve: "
        "`gateway policy export NEWDIR` (the running version), merge your edits from "
        f"{directory} into NEWDIR, preview with `gateway policy diff NEWDIR`, then "
        "`gateway policy apply NEWDIR`.",
        running=running.version,
        base=base,
    )


def api_conflict(running: PolicyVersion | None, base: int | None) -> PolicyConflict:
    number = running.version if running else None
    current = describe(running) if running else "no version yet"
    return PolicyConflict(
        f"base_version {base} is not the running policy ({current}). "
        "GET /admin/policy, redo your change on its bundle, and send it again "
        f"with base_version {number}.",
        running=number,
        base=base,
    )


class PolicyService:
    """Versions over one database; `env` resolves `${VAR}`s when checking a change."""

    def __init__(
        self,
        engine: AsyncEngine,
        env: Mapping[str, str],
        *,
        utcnow: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._env = env
        self._utcnow = utcnow

    @property
    def env(self) -> Mapping[str, str]:
        return self._env

    # Reads -------------------------------------------------------------------

    async def newest_number(self) -> int | None:
        async with self._engine.connect() as conn:
            return await newest_version_number(conn)

    async def current(self) -> PolicyVersion | None:
        """The running version: the newest one."""
        async with self._engine.connect() as conn:
            return await read_newest(conn)

    async def history(self, limit: int = 100, before: int | None = None) -> list[PolicyVersion]:
        """Newest first; `before` pages back."""
        async with self._engine.connect() as conn:
            return await read_history(conn, limit=limit, before=before)

    async def get(self, version: int) -> PolicyVersion:
        async with self._engine.connect() as conn:
            found = await read_version(conn, version)
        if found is None:
            raise VersionNotFound(f"There is no policy version {version}.", param="version")
        return found

    async def diff(self, old: int, new: int) -> str:
        """Unified diff of two versions' stable YAML renderings ("" when equal)."""
        was, now = await self.get(old), await self.get(new)
        return bundle_text.unified_diff(was.bundle, now.bundle, f"version {old}", f"version {new}")

    async def audit(self, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        """Newest first; `before` pages back."""
        async with self._engine.connect() as conn:
            return await read_audit(conn, limit=limit, before=before)

    def compile(self, version: PolicyVersion) -> Policy:
        """Compile a stored version with this process's environment (PolicyInvalid if it can't)."""
        return compile_version(version, self._env)

    # Folders -----------------------------------------------------------------

    async def read_folder(self, directory: Path) -> Candidate:
        """Load and check a folder off the event loop (YAML parsing can be slow)."""
        return await asyncio.to_thread(candidate_from_folder, directory, self._env)

    async def folder_base(self, directory: Path, content_hash: str | None = None) -> int | None:
        """The version a folder's files are based on.

        Its marker's; else, when its content equals a stored version, that one
        (an old, unedited folder is stale, not an edit); else the newest
        version made from this same folder (a watched folder edited in place).
        None for an unknown folder: a copy made elsewhere, whose base cannot be
        told, is refused rather than allowed to undo changes it never saw.
        """
        marker = bundle_text.read_marker(directory)
        if marker is not None:
            return marker.version
        async with self._engine.connect() as conn:
            if content_hash is not None:
                same = await conn.scalar(
                    sa.select(sa.func.max(policy_versions.c.version)).where(
                        policy_versions.c.hash == content_hash
                    )
                )
                if same is not None:
                    return int(same)
            return await _newest_from_folder(conn, directory)

    async def plan_folder(self, directory: Path) -> FolderPlan:
        """Check a folder and diff it against the running version (the `diff DIR` preview)."""
        candidate = await self.read_folder(directory)
        running = await self.current()
        diff = bundle_text.unified_diff(
            running.bundle if running else None,
            candidate.raw,
            f"version {running.version} (running)" if running else "no version",
            str(directory),
        )
        return FolderPlan(running, await self.folder_base(directory, candidate.hash), diff)

    async def apply_folder(
        self,
        directory: Path,
        *,
        author: str,
        reason: str,
        base_version: int | None = None,
        update_marker: bool = True,
    ) -> Applied:
        """Apply a folder as the next version; base from `base_version`, else the folder's.

        With `update_marker` the folder's marker records the resulting version,
        so the next edit of the same folder is based on it.
        """
        candidate = await self.read_folder(directory)
        if base_version is not None:
            base: int | None = base_version
        else:
            base = await self.folder_base(directory, candidate.hash)

        def expect(running: PolicyVersion | None) -> None:
            if running is not None and running.version != base:
                raise folder_conflict(directory, running, base)

        applied = await self._commit(
            candidate,
            action=ACTION_APPLY_FILES,
            author=author,
            reason=reason,
            expect=expect,
            folder=directory,
        )
        if update_marker:
            marker = bundle_text.Marker(applied.version.version, applied.version.hash)
            bundle_text.write_marker(directory, marker)
        return applied

    async def bootstrap(self, directory: Path) -> Applied:
        """Make the folder version 1 when the database holds no version; else change nothing."""
        running = await self.current()
        if running is not None:
            return Applied(running, running.version, is_new=False)
        candidate = await self.read_folder(directory)

        def expect(running: PolicyVersion | None) -> None:
            if running is not None:  # another replica bootstrapped first: its version stands
                raise _AlreadyBootstrapped(running)

        try:
            return await self._commit(
                candidate,
                action=ACTION_BOOTSTRAP,
                author="bootstrap",
                reason=f"bootstrapped from {directory}",
                expect=expect,
                folder=directory,
            )
        except _AlreadyBootstrapped as other:
            return Applied(other.version, other.version.version, is_new=False)

    async def export(
        self, directory: Path, *, version: int | None = None, force: bool = False
    ) -> PolicyVersion:
        """Write a version (default: the running one) as one YAML file per section + marker."""
        if version is None:
            chosen = await self.current()
            if chosen is None:
                raise VersionNotFound("The database holds no policy version yet.")
        else:
            chosen = await self.get(version)
        marker = bundle_text.Marker(chosen.version, chosen.hash)
        bundle_text.write_export(directory, chosen.bundle, marker, force=force)
        return chosen

    # Changes -----------------------------------------------------------------

    async def apply(
        self, bundle: Mapping[str, Any], *, author: str, reason: str, base_version: int | None
    ) -> Applied:
        """A whole bundle (JSON) as the next version, if `base_version` is the running one."""
        candidate = candidate_from_raw(bundle, self._env)

        def expect(running: PolicyVersion | None) -> None:
            if (running.version if running else None) != base_version:
                raise api_conflict(running, base_version)

        return await self._commit(
            candidate, action=ACTION_APPLY, author=author, reason=reason, expect=expect
        )

    async def patch_team(
        self,
        team: str,
        team_changes: Mapping[str, Any],
        *,
        author: str,
        reason: str,
        base_version: int | None,
    ) -> Applied:
        """Merge-patch one team (RFC 7386: `null` removes a field) into the running bundle."""
        running = await self.current()
        if running is None or running.version != base_version:
            raise api_conflict(running, base_version)
        if team not in running.bundle.get("teams", {}):
            raise NotFound(f"Team '{team}' is not in the policy.", param="team")
        patched = changes.patch_team(running.bundle, team, dict(team_changes))
        candidate = candidate_from_raw(patched, self._env)

        def expect(now: PolicyVersion | None) -> None:
            if now is None or now.version != base_version:
                raise api_conflict(now, base_version)

        return await self._commit(
            candidate,
            action=ACTION_PATCH_TEAM,
            author=author,
            reason=reason,
            expect=expect,
            target=f"teams.{team}",
        )

    async def rollback(self, version: int, *, author: str, reason: str) -> Applied:
        """A new version equal to `version` (a no-op when the running one already is)."""
        old = await self.get(version)
        candidate = candidate_from_raw(old.bundle, self._env, f"policy version {version}")
        return await self._commit(
            candidate,
            action=ACTION_ROLLBACK,
            author=author,
            reason=reason or f"rollback to version {version}",
            expect=None,
            restores=version,
        )

    async def _commit(
        self,
        candidate: Candidate,
        *,
        action: str,
        author: str,
        reason: str,
        expect: Callable[[PolicyVersion | None], None] | None,
        target: str = "policy",
        restores: int | None = None,
        folder: Path | None = None,
    ) -> Applied:
        """Write the candidate as the next version and its audit entry, under the lock."""
        async with locked_transaction(self._engine, LOCK_NAME) as conn:
            running = await read_newest(conn)
            if running is not None and running.hash == candidate.hash:
                return Applied(running, running.version, is_new=False)
            if expect is not None:
                expect(running)
            previous = running.version if running else None
            new = PolicyVersion(
                version=(previous or 0) + 1,
                parent=previous,
                author=author,
                created_at=self._utcnow(),
                reason=reason,
                bundle=candidate.raw,
                hash=candidate.hash,
            )
            await insert_version(conn, new)
            before, after = changes.changed_parts(running.bundle if running else None, new.bundle)
            extra: dict[str, Any] = {} if restores is None else {"restores": restores}
            if folder is not None:
                extra["from_folder"] = _folder_id(folder)
            await record_audit(
                conn,
                actor=author,
                action=action,
                target=target,
                reason=reason,
                before={"version": previous, **before},
                after={"version": new.version, **extra, **after},
                at=new.created_at,
            )
        return Applied(new, previous, is_new=True)


class _AlreadyBootstrapped(Exception):
    def __init__(self, version: PolicyVersion) -> None:
        self.version = version


def _folder_id(directory: Path) -> str:
    return str(directory.resolve())


async def _newest_from_folder(conn: AsyncConnection, directory: Path) -> int | None:
    """The newest version made from this folder, per the audit log (written with it)."""
    wanted = _folder_id(directory)
    rows = await conn.execute(
        sa.select(audit_log.c.after)
        .where(audit_log.c.action.in_(FROM_FILES))
        .order_by(audit_log.c.id.desc())
        .limit(FOLDER_HISTORY_SCAN)
    )
    for (after,) in rows:
        entry = orjson.loads(after) if after else {}
        version = entry.get("version")
        if entry.get("from_folder") == wanted and isinstance(version, int):
            return version
    return None
