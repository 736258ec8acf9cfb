"""How versions were made, read back from the audit log: origins, folders, conflicts.

The audit entry written with each version records its action and, for a
folder, which folder and base it came from; this module reads those back
(the newest HISTORY_SCAN policy entries) for `apply_rule`'s decision and words
the refusal. Reads only, over a connection the caller holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit import audit_log
from gateway.errors import GatewayError
from gateway.policy import bundle_text
from gateway.policy.apply_rule import (
    FROM_FILES,
    HELD_KEY,
    PolicyAction,
    VersionOrigin,
    held_change,
    is_unseen,
)
from gateway.policy.folder_base import takes_in
from gateway.policy.versions import MAX_VERSION, PolicyVersion, policy_versions, read_version

# Policy changes looked back through to find how recent versions were made;
# older history only matters for a folder based on a very old version.
HISTORY_SCAN = 1000


class PolicyConflict(GatewayError):
    """409: the change would undo a change it has not seen."""

    status = 409
    type = "invalid_request_error"
    code = "policy_conflict"

    def __init__(self, message: str, *, running: int | None, base: int | None) -> None:
        super().__init__(message, param="base_version")
        self.running = running
        self.base = base


# The reason quoted in a conflict: enough to recognise the change, never a whole essay
# (versions stored before reasons were capped may hold any length).
DESCRIBED_REASON_CHARS = 200


def describe(version: PolicyVersion) -> str:
    when = version.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    reason = version.reason
    why = f": {reason[:DESCRIBED_REASON_CHARS]!r}" if reason else ""
    if len(reason) > DESCRIBED_REASON_CHARS:
        why += f"… (cut, {len(reason)} characters)"
    return f"version {version.version} by {version.author} at {when}{why}"


def folder_conflict(
    directory: Path,
    running: PolicyVersion,
    base: int | None,
    held: int,
    held_kind: str,
    marker: bundle_text.Marker | None,
    is_foreign_marker: bool,
    is_marker_identical: bool = False,
) -> PolicyConflict:
    """The refusal of a folder that has not seen the admin-API edit or rollback `held`;
    `marker` is the folder's, `is_foreign_marker` whether it comes from another database
    (`marked_version`), `is_marker_identical` whether the version it names has the same
    content as `base`."""
    if base is not None and marker is not None and not is_foreign_marker and marker.version < base:
        # Its files equal a later version than its marker names (a rollback made one
        # identical): name the version the operator exported, and the one matched.
        if is_marker_identical:
            basis = (
                f"is based on version {marker.version} (its {bundle_text.MARKER_NAME}), "
                f"identical to the later version {base}"
            )
        else:
            basis = (
                f"is based on version {marker.version} (its {bundle_text.MARKER_NAME}); "
                f"its files equal the later version {base}"
            )
    elif base is not None:
        basis = f"is based on version {base}"
    elif is_foreign_marker and marker is not None and marker.version > MAX_VERSION:
        basis = (
            f"does not say which version it is based on: its {bundle_text.MARKER_NAME} "
            f"names version {marker.version}, past any version a database can hold"
        )
    elif is_foreign_marker and marker is not None:
        basis = (
            f"does not say which version it is based on: its {bundle_text.MARKER_NAME} "
            f"names version {marker.version}, which is not this database's version "
            f"{marker.version} (the folder was exported from or applied to another database)"
        )
    else:
        basis = (
            f"does not say which version it is based on (no {bundle_text.MARKER_NAME}, "
            "or one that is no version marker)"
        )
    if base is not None and marker is not None and not is_foreign_marker and marker.version > base:
        # Its files equal an older version than the one it was exported at: an old copy
        # put back by mistake, or an edit that set them back on purpose. Only the
        # operator can tell; exporting again would not help, so say what does.
        return PolicyConflict(
            f"Refused: {directory} holds exactly version {base}, although it was exported "
            f"at version {marker.version}; the running policy is {describe(running)}, "
            f"which holds {held_kind} (version {held}) that applying it would undo. If its "
            f"files were set back to version {base} on purpose: `gateway policy apply "
            f"{directory} --force`. If an old copy replaced them by mistake: `gateway "
            f"policy export {directory} --force` brings them up to date.",
            running=running.version,
            base=base,
        )
    return PolicyConflict(
        f"Refused: {directory} {basis}, but the running policy is {describe(running)}, "
        f"which holds {held_kind} (version {held}) that the folder has not seen; applying "
        "the folder would silently undo it. To resolve: `gateway policy export NEWDIR` "
        f"(the running version), merge your edits from {directory} into NEWDIR, preview "
        "with `gateway policy diff NEWDIR`, then `gateway policy apply NEWDIR`. To replace "
        f"that change on purpose: `gateway policy apply {directory} --force`.",
        running=running.version,
        base=base,
    )


def folder_id(directory: Path) -> str:
    return str(directory.resolve())


async def _recent_policy_entries(
    conn: AsyncConnection,
) -> list[tuple[PolicyAction, dict[str, Any]]]:
    """(action, after) of the newest policy changes, newest first."""
    rows = await conn.execute(
        sa.select(audit_log.c.action, audit_log.c.after)
        .where(audit_log.c.action.in_(list(PolicyAction)))
        .order_by(audit_log.c.id.desc())
        .limit(HISTORY_SCAN)
    )
    return [(PolicyAction(action), orjson.loads(after) if after else {}) for action, after in rows]


async def origins(conn: AsyncConnection) -> list[VersionOrigin]:
    """How each recent version was made."""
    found = []
    for action, after in await _recent_policy_entries(conn):
        version = after.get("version")
        if isinstance(version, int):
            held = after.get(HELD_KEY)
            found.append(
                VersionOrigin(
                    version,
                    action,
                    held if isinstance(held, int) else None,
                    has_held=HELD_KEY in after,
                )
            )
    return found


async def conflict_for_folder(
    conn: AsyncConnection,
    directory: Path,
    running: PolicyVersion,
    base: int | None,
    known: list[VersionOrigin] | None = None,
) -> PolicyConflict | None:
    """The refusal a folder based on `base` meets, or None when it may be applied."""
    if known is None:
        known = await origins(conn)
    held = held_change(known, running.version)
    if held is None or not is_unseen(held, base):
        return None
    kind = next(
        (
            "a rollback" if o.action is PolicyAction.ROLLBACK else "an admin-API change"
            for o in known
            if o.version == held
        ),
        "an admin-API change or a rollback",
    )
    marker = bundle_text.read_marker(directory)
    is_foreign = marker is not None and await marked_version(conn, marker) is None
    is_identical = False
    if marker is not None and not is_foreign and base is not None and marker.version < base:
        hashes = set(
            await conn.scalars(
                sa.select(policy_versions.c.hash).where(
                    policy_versions.c.version.in_([marker.version, base])
                )
            )
        )
        is_identical = len(hashes) == 1
    return folder_conflict(directory, running, base, held, kind, marker, is_foreign, is_identical)


async def marked_version(conn: AsyncConnection, marker: bundle_text.Marker | None) -> int | None:
    """The version `marker` names, if this database holds it with the marker's hash.

    None for no marker, or a marker from another database (the folder was exported
    from or applied to it): its number means nothing here, so the folder's base is
    unknown, as without a marker. Trusting it would stall the watcher on a version
    that does not exist, or let a stale folder pass as having seen a rollback.
    """
    if marker is None or not 1 <= marker.version <= MAX_VERSION:
        return None  # a number no version can have (past the INTEGER column) is no marker
    stored = await conn.scalar(
        sa.select(policy_versions.c.hash).where(policy_versions.c.version == marker.version)
    )
    if stored is None or (marker.hash and marker.hash != stored):
        return None  # a marker written by hand, without a hash, is taken at its word
    return marker.version


async def version_hash(conn: AsyncConnection, version: int) -> str | None:
    return await conn.scalar(
        sa.select(policy_versions.c.hash).where(policy_versions.c.version == version)
    )


async def merged_base(
    conn: AsyncConnection, raw: dict[str, Any], running: PolicyVersion, base: int | None
) -> int | None:
    """`base`, or the running version when the folder's content `raw` has taken in every
    change made since `base` (`folder_base.takes_in`: the running version exported and
    the folder's edits merged into it, the marker left behind, as a ConfigMap must)."""
    if base is None or base >= running.version:
        return base
    based = await read_version(conn, base)
    if based is not None and takes_in(raw, based.bundle, running.bundle):
        return running.version
    return base


async def newest_from_folder(conn: AsyncConnection, directory: Path) -> int | None:
    """The newest version made from this folder (bootstrap or folder apply)."""
    wanted = folder_id(directory)
    for action, after in await _recent_policy_entries(conn):
        version = after.get("version")
        if action in FROM_FILES and after.get("from_folder") == wanted and isinstance(version, int):
            return version
    return None
