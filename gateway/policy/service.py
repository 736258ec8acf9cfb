"""The one way the policy changes: shared by the CLI, the admin API and `serve`'s sync.

Owns SPEC §4's rules. A change is validated (schema, then compiled with this
process's environment, every error located) before anything is written; it
becomes version N+1 under a cross-process lock, so two replicas never both
create N+1; a bundle equal to the running one (same hash) is a no-op; an API
change based on a version other than the running one is refused with
`PolicyConflict`, whose message says how to resolve it; every new version
writes its audit entry in the same transaction. It never renders HTTP or
prints: edges do that. CPU-heavy work (compiling, rendering diffs) runs in a
thread, so an admin call on a large policy never stalls the event loop.

A folder goes through unless the running version holds an admin-API edit or
a rollback the folder has not seen (`apply_rule`); `force` overrides. A
folder's base is its marker's (`.policy-version`, written by export and
apply) when this database holds that version; else the stored version its
content equals; else the newest version made from this same folder; else
unknown.

The replica that makes a change enforces it before the call returns: the
gateway attaches its `enforce` (compile, swap, reconcile providers) here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit import AuditEntry, read_audit, record_audit
from gateway.db import locked_transaction
from gateway.errors import InvalidRequest, NotFound, quoted
from gateway.policy import bundle_text, changes
from gateway.policy.advice import misplaced_clients, policy_warnings
from gateway.policy.apply_rule import (
    HELD_KEY,
    PolicyAction,
    held_change,
)
from gateway.policy.budget_eras import eras_after
from gateway.policy.candidate import (
    Candidate,
    candidate_for_folders,
    candidate_from_folder,
    compile_version,
    folder_content,
)
from gateway.policy.compiled import Policy
from gateway.policy.folder_base import FolderBase, judge_folder
from gateway.policy.folder_limits import export_files
from gateway.policy.lineage import (
    PolicyConflict,
    conflict_for_folder,
    describe,
    folder_id,
    marked_version,
    merged_base,
    newest_from_folder,
    origins,
    version_hash,
)
from gateway.policy.schema import TeamSpec
from gateway.policy.versions import (
    PolicyVersion,
    insert_version,
    newest_version_number,
    policy_versions,
    read_history,
    read_newest,
    read_version,
)

__all__ = [
    "Applied",
    "FolderPlan",
    "PolicyAction",
    "PolicyConflict",
    "PolicyService",
    "VersionNotFound",
]

LOCK_NAME = "gateway:policy_versions"
# A reason is a line or a paragraph for history and the audit log, quoted in conflicts;
# an unbounded one would bloat every later history page and 409.
MAX_REASON_CHARS = 1000


def check_reason(reason: str) -> None:
    """Refuse a reason longer than MAX_REASON_CHARS (400 naming `reason`)."""
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidRequest(
            f"Invalid 'reason': at most {MAX_REASON_CHARS} characters (got {len(reason)}).",
            param="reason",
        )


def check_patchable(team_changes: Mapping[str, Any]) -> None:
    """Refuse a team PATCH that changes more than quotas, limits or models (400 naming it)."""
    refused = changes.unpatchable_team_fields(dict(team_changes))
    if not refused:
        return
    field, allowed = refused[0], ", ".join(changes.PATCHABLE_TEAM_FIELDS)
    if field not in TeamSpec.model_fields:
        raise InvalidRequest(
            f"{quoted(field)} is not a field of a team; PATCH /admin/teams/{{team}} "
            f"changes a team's {allowed}.",
            param=f"changes.{field}",
        )
    raise InvalidRequest(
        f"PATCH /admin/teams/{{team}} changes a team's {allowed} only; "
        f"change {quoted(field)} with PUT /admin/policy or a policy file "
        "(`gateway policy apply`).",
        param=f"changes.{field}",
    )


class VersionNotFound(NotFound):
    code = "policy_version_not_found"


@dataclass(frozen=True, slots=True)
class Applied:
    version: PolicyVersion  # the running version after the call
    previous: int | None  # the running version before it
    is_new: bool  # False: the bundle equalled the running one and nothing was written
    # what `policy check` would warn of in the bundle given (advice.py), changed or not
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FolderPlan:
    """What `apply DIR` would do: the diff from the running version, and any refusal."""

    running: PolicyVersion | None
    base: int | None  # the version the folder is based on; None when that cannot be told
    diff: str
    conflict: PolicyConflict | None  # why `apply` would refuse it (without --force)
    warnings: tuple[str, ...] = ()  # what `policy check` would warn of in the folder


def api_conflict(running: PolicyVersion | None, base: int | None) -> PolicyConflict:
    number = running.version if running else None
    current = describe(running) if running else "no version yet"
    return PolicyConflict(
        f"base_version {_json_number(base)} is not the running policy ({current}). "
        "GET /admin/policy, redo your change on its bundle, and send it again "
        f"with base_version {_json_number(number)}.",
        running=number,
        base=base,
    )


def _json_number(value: int | None) -> str:
    """A version as the API client wrote it: `null` for none (never Python's `None`)."""
    return "null" if value is None else str(value)


Enforce = Callable[[], Awaitable[object]]


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
        self._enforce: Enforce | None = None
        self._folder_status: Callable[[], dict[str, Any] | None] | None = None

    @property
    def env(self) -> Mapping[str, str]:
        return self._env

    def attach(
        self,
        *,
        enforce: Enforce,
        folder_status: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        """Wire a serving process: `enforce` runs after each new version this service writes
        (so the replica that wrote it enforces it before answering); `folder_status` describes
        the watched folder for `GET /admin/policy`. The CLI attaches nothing."""
        self._enforce = enforce
        self._folder_status = folder_status

    async def catch_up(self) -> None:
        """Enforce the newest version now if this process is behind (a read after another
        worker or replica wrote one reads that write); nothing for the CLI."""
        if self._enforce is not None:
            await self._enforce()

    def folder_status(self) -> dict[str, Any] | None:
        """The watched folder's state (path, version, whether it is up to date), if any."""
        return self._folder_status() if self._folder_status is not None else None

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

    async def get(self, version: int, param: str = "version") -> PolicyVersion:
        """One version; VersionNotFound names `param`, the field that asked for it."""
        async with self._engine.connect() as conn:
            found = await read_version(conn, version)
        if found is None:
            raise VersionNotFound(f"There is no policy version {version}.", param=param)
        return found

    async def diff(self, old: int | None, new: int) -> str:
        """Unified diff of two versions' stable YAML renderings ("" when equal); `old`
        None: from no version (the first apply's diff, as `diff DIR` previewed it)."""
        was = None if old is None else (await self.get(old, "from")).bundle
        now = await self.get(new, "to")
        return await asyncio.to_thread(
            bundle_text.unified_diff,
            was,
            now.bundle,
            "no version" if old is None else f"version {old}",
            f"version {new}",
        )

    async def audit(self, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        """Newest first; `before` pages back."""
        async with self._engine.connect() as conn:
            return await read_audit(conn, limit=limit, before=before)

    async def compile(self, version: PolicyVersion) -> Policy:
        """Compile a stored version with this process's environment (PolicyInvalid if it
        can't), in a thread: a large policy takes a while."""
        return await asyncio.to_thread(compile_version, version, self._env)

    # Folders -----------------------------------------------------------------

    async def read_folder(self, directory: Path) -> Candidate:
        """Load and check a folder off the event loop (YAML parsing can be slow)."""
        return await asyncio.to_thread(candidate_from_folder, directory, self._env)

    async def read_folder_content(self, directory: Path) -> tuple[dict[str, Any], str]:
        """A folder's bundle and hash, schema-checked only (`candidate.folder_content`)."""
        return await asyncio.to_thread(folder_content, directory)

    async def folder_base(self, directory: Path, content_hash: str | None = None) -> int | None:
        """The version a folder's files are based on; None when it cannot be told
        (`folder_base.judge_folder`)."""
        return (await self.judge_folder(directory, content_hash)).version

    async def judge_folder(self, directory: Path, content_hash: str | None = None) -> FolderBase:
        """The version a folder is based on, and whether it holds an edit, from its marker,
        its content (`content_hash`; None: not compared) and the history."""
        async with self._engine.connect() as conn:
            same = None
            if content_hash is not None:
                same = await conn.scalar(
                    sa.select(sa.func.max(policy_versions.c.version)).where(
                        policy_versions.c.hash == content_hash
                    )
                )
            marked = await marked_version(conn, bundle_text.read_marker(directory))
            holds_marked = False
            if marked is not None and content_hash is not None:
                holds_marked = await version_hash(conn, marked) == content_hash
            from_folder, holds_from_folder = None, False
            if marked is None:
                from_folder = await newest_from_folder(conn, directory)
                if from_folder is not None and content_hash is not None:
                    holds_from_folder = await version_hash(conn, from_folder) == content_hash
            return judge_folder(
                marked=marked,
                holds_marked=holds_marked,
                same=None if same is None else int(same),
                from_folder=from_folder,
                holds_from_folder=holds_from_folder,
            )

    async def marked_version(self, marker: bundle_text.Marker | None) -> int | None:
        """The version `marker` names if this database holds it (`lineage.marked_version`)."""
        async with self._engine.connect() as conn:
            return await marked_version(conn, marker)

    async def plan_folder(self, directory: Path) -> FolderPlan:
        """Check a folder and diff it against the running version (the `diff DIR` preview)."""
        candidate = await self.read_folder(directory)
        running = await self.current()
        diff = await asyncio.to_thread(
            bundle_text.unified_diff,
            running.bundle if running else None,
            candidate.raw,
            f"version {running.version} (running)" if running else "no version",
            str(directory),
        )
        base = await self.folder_base(directory, candidate.hash)
        conflict = None
        if diff and running is not None:
            async with self._engine.connect() as conn:
                base = await merged_base(conn, candidate.raw, running, base)
                conflict = await conflict_for_folder(conn, directory, running, base)
        warnings = await _warnings(candidate, self._engine)
        return FolderPlan(running, base, diff, conflict, warnings)

    async def apply_folder(
        self,
        directory: Path,
        *,
        author: str,
        reason: str,
        base_version: int | None = None,
        force: bool = False,
    ) -> Applied:
        """Apply a folder as the next version, unless it has not seen an API edit or rollback.

        Its base is `base_version` if given, else the folder's (`folder_base`).
        `force` applies it even then. The folder's marker records the resulting
        version, so the next edit of the same folder is based on it (a read-only
        folder, such as a ConfigMap, is left as it is).
        """
        check_reason(reason)
        candidate = await self.read_folder(directory)
        if base_version is not None:
            base: int | None = base_version
        else:
            base = await self.folder_base(directory, candidate.hash)

        async def check(conn: AsyncConnection, running: PolicyVersion | None) -> dict[str, Any]:
            known = await origins(conn)
            based = base
            if running is not None:
                based = await merged_base(conn, candidate.raw, running, base)
                if not force:
                    conflict = await conflict_for_folder(conn, directory, running, based, known)
                    if conflict is not None:
                        raise conflict
            # The new version carries the changes its base carried, and no later one.
            held = held_change(known, based) if based is not None else None
            return {"based_on": based, HELD_KEY: held, "from_folder": folder_id(directory)}

        applied = await self._commit(
            candidate, action=PolicyAction.APPLY_FILES, author=author, reason=reason, check=check
        )
        marker = bundle_text.Marker(applied.version.version, applied.version.hash)
        bundle_text.write_marker(directory, marker)
        return applied

    async def bootstrap(self, directory: Path) -> Applied:
        """Make the folder version 1 when the database holds no version; else change nothing."""
        running = await self.current()
        if running is not None:
            return Applied(running, running.version, is_new=False)
        candidate = await self.read_folder(directory)

        async def check(_conn: AsyncConnection, running: PolicyVersion | None) -> dict[str, Any]:
            if running is not None:  # another replica bootstrapped first: its version stands
                raise _AlreadyBootstrapped(running)
            return {"from_folder": folder_id(directory)}

        try:
            return await self._commit(
                candidate,
                action=PolicyAction.BOOTSTRAP,
                author="bootstrap",
                reason=f"bootstrapped from {directory}",
                check=check,
            )
        except _AlreadyBootstrapped as other:
            return Applied(other.version, other.version.version, is_new=False)

    async def export(
        self, directory: Path, *, version: int | None = None, force: bool = False
    ) -> PolicyVersion:
        """Write a version (default: the running one) as one YAML file per section (a
        section past a file's limits in several) + marker."""
        if version is None:
            chosen = await self.current()
            if chosen is None:
                raise VersionNotFound("The database holds no policy version yet.")
        else:
            chosen = await self.get(version)
        marker = bundle_text.Marker(chosen.version, chosen.hash)
        based = bundle_text.read_marker(directory)
        based_on = None
        if based is not None and not force:  # to name the files an edit there changed
            async with self._engine.connect() as conn:
                found = await read_version(conn, based.version)
            based_on = found.bundle if found is not None else None
        files = await asyncio.to_thread(export_files, chosen.bundle)
        await asyncio.to_thread(
            bundle_text.write_export,
            directory,
            files,
            marker,
            force=force,
            based_on=based_on,
        )
        return chosen

    # Changes -----------------------------------------------------------------

    async def apply(
        self, bundle: Mapping[str, Any], *, author: str, reason: str, base_version: int | None
    ) -> Applied:
        """A whole bundle (JSON) as the next version, if `base_version` is the running one."""
        check_reason(reason)
        candidate = await asyncio.to_thread(candidate_for_folders, bundle, self._env)

        async def check(_conn: AsyncConnection, running: PolicyVersion | None) -> dict[str, Any]:
            if (running.version if running else None) != base_version:
                raise api_conflict(running, base_version)
            return {}

        return await self._commit(
            candidate,
            action=PolicyAction.APPLY,
            author=author,
            reason=reason,
            check=check,
            check_before_noop=True,
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
        """Merge-patch one team (RFC 7386: `null` removes a field) into the running bundle.

        Only its quotas, limits and models (`changes.PATCHABLE_TEAM_FIELDS`); another of
        its fields is a 400 naming it."""
        check_reason(reason)
        check_patchable(team_changes)
        running = await self.current()
        if running is None or running.version != base_version:
            raise api_conflict(running, base_version)
        if team not in running.bundle.get("teams", {}):
            raise NotFound(f"Team {quoted(team)} is not in the policy.", param="team")
        patched = changes.patch_team(running.bundle, team, dict(team_changes))
        candidate = await asyncio.to_thread(candidate_for_folders, patched, self._env)

        async def check(_conn: AsyncConnection, now: PolicyVersion | None) -> dict[str, Any]:
            if now is None or now.version != base_version:
                raise api_conflict(now, base_version)
            return {}

        return await self._commit(
            candidate,
            action=PolicyAction.PATCH_TEAM,
            author=author,
            reason=reason,
            check=check,
            target=f"teams.{team}",
            check_before_noop=True,
        )

    async def rollback(
        self, version: int, *, author: str, reason: str, base_version: int | None = None
    ) -> Applied:
        """A new version equal to `version` (a no-op when the running one already is).
        With `base_version`, only while that is the running version (else PolicyConflict)."""
        check_reason(reason)
        old = await self.get(version)
        candidate = await asyncio.to_thread(
            candidate_for_folders, old.bundle, self._env, f"policy version {version}"
        )

        async def check(_conn: AsyncConnection, running: PolicyVersion | None) -> dict[str, Any]:
            if base_version is not None and (running is None or running.version != base_version):
                raise api_conflict(running, base_version)
            return {"restores": version}

        return await self._commit(
            candidate,
            action=PolicyAction.ROLLBACK,
            author=author,
            reason=reason or f"rollback to version {version}",
            check=check,
            check_before_noop=base_version is not None,
        )

    async def _commit(
        self,
        candidate: Candidate,
        *,
        action: PolicyAction,
        author: str,
        reason: str,
        check: Callable[[AsyncConnection, PolicyVersion | None], Awaitable[dict[str, Any]]],
        target: str = "policy",
        check_before_noop: bool = False,
    ) -> Applied:
        """Write the candidate as the next version and its audit entry, under the lock, then
        enforce it here. `check` may refuse (raise) and returns what the audit entry adds.

        `check_before_noop`: an API change names its base_version, and a stale base is a
        conflict even when the bundle equals the running one (SPEC §5: 409), so `check`
        runs before the unchanged-bundle shortcut."""
        warnings = await _warnings(candidate, self._engine)
        async with locked_transaction(self._engine, LOCK_NAME) as conn:
            running = await read_newest(conn)
            extra = await check(conn, running) if check_before_noop else None
            if running is not None and running.hash == candidate.hash:
                return Applied(running, running.version, is_new=False, warnings=warnings)
            if extra is None:
                extra = await check(conn, running)
            previous = running.version if running else None
            number = (previous or 0) + 1
            new = PolicyVersion(
                version=number,
                parent=previous,
                author=str(author),  # the name; an ApiActor's caller goes to the audit
                created_at=self._utcnow(),
                reason=reason,
                bundle=candidate.raw,
                hash=candidate.hash,
                budget_eras=eras_after(
                    running.bundle if running else None,
                    running.budget_eras if running else {},
                    candidate.raw,
                    number,
                ),
            )
            await insert_version(conn, new)
            before, after = await asyncio.to_thread(
                changes.changed_parts, running.bundle if running else None, new.bundle
            )
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
        if self._enforce is not None:
            await self._enforce()
        return Applied(new, previous, is_new=True, warnings=warnings)


async def _warnings(candidate: Candidate, engine: AsyncEngine) -> tuple[str, ...]:
    """What `policy check` would warn of in `candidate`, in a thread: a policy of
    thousands of teams takes a while to walk; and each of the gateway's own clients a
    team lists that was created for another team (`misplaced_clients`)."""
    found = await asyncio.to_thread(policy_warnings, candidate.policy)
    listed = {c: t.name for t in candidate.policy.teams.values() for c in t.clients}
    if listed:
        found.extend(misplaced_clients(listed, await _client_teams(engine, listed)))
    return tuple(found)


async def _client_teams(engine: AsyncEngine, client_ids: Iterable[str]) -> dict[str, str]:
    """The team each of these ids' built-in clients was created for (not revoked)."""
    from gateway.auth.clients import oauth_clients  # the registry's table

    wanted = sorted(client_ids)
    teams: dict[str, str] = {}
    async with engine.connect() as conn:
        for start in range(0, len(wanted), 500):  # bounded IN lists
            rows = await conn.execute(
                sa.select(oauth_clients.c.client_id, oauth_clients.c.team).where(
                    oauth_clients.c.client_id.in_(wanted[start : start + 500]),
                    oauth_clients.c.revoked_at.is_(None),
                )
            )
            teams.update((client_id, team) for client_id, team in rows)
    return teams


class _AlreadyBootstrapped(Exception):
    def __init__(self, version: PolicyVersion) -> None:
        self.version = version
