"""Keep this process on the newest policy version, and turn folder edits into versions.

`PolicySync` polls the database's newest version number and, when it moves,
compiles that version and swaps the `PolicyStore` (and the changed providers)
in one step; the service also calls it right after this process writes a
version, so the writer enforces its change before it answers. `FolderWatcher`
polls the `--policies` folder and applies an edit as a new version through
`PolicyService`; when the running version moves on without it (an apply of
another folder, an admin-API change, a rollback), it brings the folder up to
date, if the folder holds no edit of its own. Neither decides what a valid or
conflicting change is: the service does.

The providers are reached through the `ProviderPool` protocol, so this
package does not import `gateway.providers` (which imports the policy).

Why polling, not LISTEN/NOTIFY or Redis pub/sub: measured with
`bench/policy_sync.py` on this machine, one poll (`SELECT max(version)` on the
primary key, pool checkout included) costs ~0.6 ms on SQLite and ~1 ms on
PostgreSQL, so two polls a second per replica are free; a version committed by
another process is enforced here 250 ms later on average and 490 ms at worst
(compile and swap included), on both databases — a quarter of SPEC §4's 2 s.
LISTEN/NOTIFY delivers in ~0.2 ms, but only on PostgreSQL, needs a dedicated
connection per replica with reconnect logic, and loses notifications sent
while that connection is down, so it would need this poll behind it anyway.
Redis pub/sub has the same loss problem and Redis is optional. Polling is
simpler, works the same on SQLite and PostgreSQL, and cannot miss a version.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from gateway.policy import bundle_text
from gateway.policy.compiled import Policy, ProviderConfig
from gateway.policy.errors import PolicyInvalid
from gateway.policy.folder_limits import export_files, rewrite_plan
from gateway.policy.folder_quiet import newest_mtime, settle_wait_s
from gateway.policy.loader import load_bundle, policy_file_problem, policy_files
from gateway.policy.service import PolicyConflict, PolicyService
from gateway.policy.store import PolicyStore
from gateway.policy.versions import PolicyVersion
from gateway.repeated import RepeatedProblem

log = logging.getLogger("gateway.policy")

DB_POLL_INTERVAL_S = 0.5
FOLDER_POLL_INTERVAL_S = 1.0
# A file written in chunks reads as valid YAML between them: apply the folder only once it
# has been quiet this long (`folder_quiet`). With the 1 s poll, an edit is applied about
# 1 s after its last write, and at worst 2 s.
FOLDER_SETTLE_S = 1.0
RETIRE_GRACE_S = 120.0  # an in-flight request keeps its provider at least this long
# Past the longest deadline (`timeout_s`) of the version replaced: what a request spends
# before its deadline starts (its body read and checked, a limit or a thread waited for).
RETIRE_MARGIN_S = 60.0


def retire_after_s(replaced: Policy, floor_s: float = RETIRE_GRACE_S) -> float:
    """How long the providers a new version retires stay open: every request begun under
    `replaced` keeps its snapshot's providers to its end (its deadline is its route's
    `timeout_s`). A fixed grace cut a stream of a longer deadline mid-way (probe p17: a
    key rotated, its stream hung without a byte until its deadline, then 504)."""
    longest = max((route.routing.timeout_s for route in replaced.models.values()), default=0.0)
    return max(floor_s, longest + RETIRE_MARGIN_S)


class Closable(Protocol):
    async def close(self) -> None: ...


class ProviderPool(Protocol):
    """The live upstream clients (`providers.registry.ProviderSet`)."""

    async def prepare(self, configs: Mapping[str, ProviderConfig]) -> None:
        """Load what `configs`' clients need, off the event loop (litellm), before
        `reconcile` builds them."""
        ...

    def reconcile(self, configs: Mapping[str, ProviderConfig]) -> Sequence[Closable]:
        """Match the clients to `configs`; return the ones retired (closed later)."""
        ...


class PolicySync:
    """Swap to the newest database version when it changes; close retired providers later."""

    def __init__(
        self,
        service: PolicyService,
        store: PolicyStore,
        providers: ProviderPool,
        *,
        interval_s: float = DB_POLL_INTERVAL_S,
        retire_grace_s: float = RETIRE_GRACE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._service = service
        self._store = store
        self._providers = providers
        self._interval_s = interval_s
        self._retire_grace_s = retire_grace_s
        self._monotonic = monotonic
        self._failed: int | None = None  # a version this process cannot compile: logged once
        self._retiring: list[tuple[float, Sequence[Closable]]] = []
        self._lock = asyncio.Lock()

    async def refresh(self) -> bool:
        """One poll: True when a new version was swapped in."""
        async with self._lock:  # the poll loop and a folder apply may both ask at once
            number = await self._service.newest_number()
            if number is None or number in (self._store.version, self._failed):
                return False
            version = await self._service.get(number)
            try:
                policy = await self._service.compile(version)
                await self._providers.prepare(policy.providers)  # litellm, off the loop
                retired = self._providers.reconcile(policy.providers)
            except PolicyInvalid as invalid:
                self._failed = number
                errors = [str(issue) for issue in invalid.issues]
                # Not ready until a version this process can compile is the newest: every
                # replica must enforce the same one (SPEC §4).
                self._store.cannot_enforce(number, "; ".join(errors))
                log.error(
                    "policy version %d cannot be enforced here; version %s stays in force: %s",
                    number,
                    self._store.version,
                    "; ".join(errors),
                    extra={"fields": {"errors": errors}},
                )
                return False
            previous, replaced = self._store.version, self._store.current()
            self._store.swap(policy, version.version, int(version.created_at.timestamp()))
            grace_s = retire_after_s(replaced, self._retire_grace_s)
            self._retiring.append((self._monotonic() + grace_s, retired))
        log.info(
            "policy version %d is now enforced (was %s)",
            number,
            previous,
            extra={"fields": {"author": version.author, "reason": version.reason}},
        )
        return True

    async def enforce_now(self) -> None:
        """Enforce the newest version now (after this process wrote it); never raises, since
        the version is already stored and the poll retries."""
        try:
            await self.refresh()
        except Exception as exc:
            log.warning("policy refresh after a write failed: %s: %s", type(exc).__name__, exc)

    async def run(self) -> None:
        problem = RepeatedProblem(log, "policy poll")
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database outage must not stop the loop
                problem.failed(exc)
            else:
                problem.succeeded()
            await self._close_retired(self._monotonic())
            await asyncio.sleep(self._interval_s)

    async def _close_retired(self, now: float) -> None:
        due = [providers for deadline, providers in self._retiring if deadline <= now]
        self._retiring = [item for item in self._retiring if item[0] > now]
        for providers in due:
            for provider in providers:
                await provider.close()

    async def close(self) -> None:
        await self._close_retired(float("inf"))


def folder_fingerprint(directory: Path) -> tuple[tuple[str, str], ...] | None:
    """Names and content hashes of the policy files and the marker; None if unreadable.

    Content, not mtime: a ConfigMap update swaps a symlink, and files keep old mtimes.
    """
    try:
        marker = directory / bundle_text.MARKER_NAME
        found = [(p.name, _content_hash(p, directory)) for p in policy_files(directory)]
        if marker.is_file():
            found.append((marker.name, hashlib.sha256(marker.read_bytes()).hexdigest()))
        return tuple(found)
    except OSError:
        return None


def _content_hash(path: Path, directory: Path) -> str:
    """The file's content hash; for a file the loader refuses, its problem (nothing read)."""
    problem = policy_file_problem(path, directory)
    if problem is not None:
        return f"refused: {problem}"
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _CannotHold(Exception):
    """An entry of the running version fits no policy file (even split, a file would be
    past the loader's limits): written, the folder the gateway keeps would be invalid
    (and stuck so), so it is left as it is. The admin API refuses such a version."""


class FolderWatcher:
    """Apply edits of one folder as new versions (author `file:DIR`); keep it up to date.

    The folder's base is the version it last matched or produced here, or the
    version of a marker written since by someone else (`policy apply DIR`,
    `policy export`); at the first look, what the service infers (a stored
    version with equal content, its marker, or the newest version made from
    this folder; a folder differing from its marker's version holds an edit,
    `folder_base.judge_folder`). A folder whose content equals
    its base holds no edit: when the running version has moved on, its files are
    rewritten to the running version (only the files whose part changed, so the
    others keep their comments) and its marker records it, so the next edit is
    based on what runs. A folder holding an edit is never rewritten; an edit is
    applied by the service's rule, and a refusal is logged and shown by `status()`.
    """

    def __init__(
        self,
        service: PolicyService,
        directory: Path,
        *,
        enforced: Callable[[], int | None] = lambda: None,
        interval_s: float = FOLDER_POLL_INTERVAL_S,
        settle_s: float = FOLDER_SETTLE_S,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._service = service
        self._wall = wall  # compared with file mtimes
        self._directory = directory
        self._enforced = enforced  # the version this process enforces: a move means "look again"
        self._interval_s = interval_s
        self._settle_s = settle_s
        self._author = f"file:{directory}"
        self._seen: tuple[tuple[str, str], ...] | None = None
        self._seen_enforced: int | None = None
        self._marker: bundle_text.Marker | None = None
        self._has_looked = False
        self._base: int | None = None
        self._problem: str | None = None  # why the folder is not the running version, if so

    def status(self) -> dict[str, Any] | None:
        """For `GET /admin/policy`: None while the folder holds the enforced version, else
        the folder, the version its files hold and why they are behind."""
        enforced = self._enforced()
        if self._problem is None and (self._base is None or self._base == enforced):
            return None  # not looked at yet, or up to date
        return {
            "path": str(self._directory),
            "version": self._base,
            "up_to_date": False,
            "problem": self._problem
            or f"the folder does not hold the running version {enforced} yet; it is brought "
            "up to date within seconds",
        }

    async def check(self) -> None:
        """Compare the folder with the running version: apply its edit, or bring it up to date."""
        marker = bundle_text.read_marker(self._directory)
        if not self._has_looked:  # first look (a start): the service infers the base
            self._marker, self._has_looked = marker, True
        elif marker != self._marker:
            # Someone else wrote it since (`policy apply`, `policy export`): it says what the
            # files are based on now. Content equal to an older version is then an edit
            # (a revert), never a stale copy to overwrite.
            self._marker = marker
            self._base = await self._service.marked_version(marker)  # None: another database's
        await self._restore_empty_export(marker)
        refused: PolicyInvalid | None = None
        try:
            candidate = await self._service.read_folder(self._directory)
            raw, content_hash = candidate.raw, candidate.hash
        except PolicyInvalid as invalid:
            # A version this process cannot compile (a `${VAR}` it lacks), written here when it
            # was the newest, is still no edit: once a newer version runs, the files follow it.
            refused = invalid
            try:
                raw, content_hash = await self._service.read_folder_content(self._directory)
            except PolicyInvalid:
                self._log_invalid(invalid)
                return
            if self._base is None or (await self._service.get(self._base)).hash != content_hash:
                self._log_invalid(invalid)
                return
        running = await self._service.current()
        if running is None:
            return
        if running.hash == content_hash:
            self._base, self._problem = running.version, None
            if marker is not None and marker.version != running.version:
                self._mark(running)  # a later version with the same content (a rollback)
            if refused is not None:
                self._log_invalid(refused)  # the running version, which this process lacks
            return
        # What this process saw the folder hold is the surest base: content that now equals
        # an older version is then an edit made here, not a stale copy. At a start, the
        # marker says what the folder has seen (`folder_base.judge_folder`).
        if self._base is not None:
            base: int | None = self._base
            is_edit = (await self._service.get(self._base)).hash != content_hash
        else:
            judged = await self._service.judge_folder(self._directory, content_hash)
            base, is_edit = judged.version, judged.is_edit
        if base is not None and not is_edit:
            self._base = base
            await self._bring_up_to_date(running, base, raw)
            return
        try:
            applied = await self._service.apply_folder(
                self._directory,
                author=self._author,
                reason=f"edited files in {self._directory}",
                base_version=base,
            )
        except PolicyConflict as conflict:
            self._problem = f"an edit of the folder was refused: {conflict.message}"
            log.warning("policy folder edit refused: %s", conflict.message)
            return
        except PolicyInvalid as invalid:
            self._log_invalid(invalid)
            return
        self._base = applied.version.version
        self._marker = bundle_text.read_marker(self._directory)  # apply wrote it
        self._problem = None
        if applied.is_new:
            log.info(
                "policy folder %s applied as version %d",
                self._directory,
                applied.version.version,
            )
            for warning in applied.warnings:  # what `policy check` warns of (advice.py)
                log.warning("policy version %d: %s", applied.version.version, warning)

    async def _restore_empty_export(self, marker: bundle_text.Marker | None) -> None:
        """Give back its file to a folder an earlier gateway wrote an empty bundle into as
        no file at all (only the marker): the loader refuses a folder with no `*.yaml`, so it
        was stuck invalid, though it holds no edit. It then reads as its marker's version
        again, and is brought up to date like any other."""
        try:
            if marker is None or policy_files(self._directory):
                return
        except OSError:
            return  # no folder: reading it reports that
        version = await self._service.marked_version(marker)
        if version is None or (await self._service.get(version)).bundle:
            return
        files: dict[str, str | None] = {**export_files({})}
        try:
            await asyncio.to_thread(bundle_text.write_files, self._directory, files, marker)
        except OSError as exc:
            log.warning("policy folder %s cannot be restored: %s", self._directory, exc)
            return
        log.info(
            "policy folder %s held no policy file; wrote the empty bundle of version %d",
            self._directory,
            version,
        )

    def _mark(self, running: PolicyVersion) -> None:
        """Record in the marker that the folder holds `running` (its content is already
        that): the next edit is based on it, even after a restart. A read-only folder
        keeps its marker; the content still says which version it is."""
        marker = bundle_text.Marker(running.version, running.hash)
        if bundle_text.write_marker(self._directory, marker):
            self._marker = marker

    async def _bring_up_to_date(
        self, running: PolicyVersion, base: int, raw: dict[str, Any]
    ) -> None:
        """Rewrite the unedited folder (at `base`) to the running version."""
        try:
            changed = await asyncio.to_thread(self._rewrite, raw, running)
        except (OSError, _CannotHold) as exc:
            why = str(exc) if isinstance(exc, _CannotHold) else exc.strerror or str(exc)
            problem = (
                f"the folder holds version {base}, not the running version {running.version}, "
                f"and cannot be rewritten ({why}); an edit of it would be "
                "based on the older version. Update it with "
                f"`gateway policy export {self._directory} --force` where it is writable "
                "(or in its source, such as the ConfigMap)"
            )
            if problem != self._problem:
                log.warning("policy folder %s is out of date: %s", self._directory, problem)
            self._problem = problem
            return
        self._base, self._problem = running.version, None
        self._marker = bundle_text.read_marker(self._directory)
        log.info(
            "policy folder %s brought up to date with version %d (was %d; rewrote %s)",
            self._directory,
            running.version,
            base,
            ", ".join(changed) or "only the marker",
        )

    def _rewrite(self, raw: dict[str, Any], running: PolicyVersion) -> list[str]:
        """The files rewritten (names), keeping each section and entry in the file it is in."""
        locate = load_bundle(self._directory).locate
        prefix = f"{self._directory}/"

        def file_of(path: tuple[str, ...]) -> str | None:
            mark = locate(path)
            return mark.rsplit(":", 1)[0].removeprefix(prefix) if mark.startswith(prefix) else None

        try:
            plan = rewrite_plan(raw, running.bundle, file_of)
        except PolicyInvalid as invalid:
            raise _CannotHold("; ".join(str(issue) for issue in invalid.issues)) from None
        bundle_text.write_files(
            self._directory, plan, bundle_text.Marker(running.version, running.hash)
        )
        return sorted(plan)

    def _log_invalid(self, invalid: PolicyInvalid) -> None:
        errors = [str(issue) for issue in invalid.issues]
        self._problem = "the folder is invalid: " + "; ".join(errors)
        log.error(
            "policy folder %s is invalid; the running version stays in force: %s",
            self._directory,
            "; ".join(errors),
            extra={"fields": {"errors": errors}},
        )

    async def run(self) -> None:
        """Check once at start (edits made while stopped), then on every change of the
        folder or of the enforced version."""
        problem = RepeatedProblem(log, "policy folder check")
        while True:
            try:
                current = folder_fingerprint(self._directory)
                enforced = self._enforced()
                if current is not None and (
                    current != self._seen or enforced != self._seen_enforced
                ):
                    quiet = await self._quiet_fingerprint(current)
                    if quiet is not None:
                        self._seen, self._seen_enforced = quiet, enforced
                        await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database outage must not stop the watch
                self._seen = None  # try again next round
                # Say so in `GET /admin/policy`, not "up to date within seconds".
                first_line = str(exc).partition("\n")[0]
                self._problem = f"checking the folder failed ({type(exc).__name__}: {first_line})"
                problem.failed(exc)
            else:
                problem.succeeded()
            await asyncio.sleep(self._interval_s)

    async def _quiet_fingerprint(
        self, current: tuple[tuple[str, str], ...]
    ) -> tuple[tuple[str, str], ...] | None:
        """The folder's fingerprint once it has stopped changing (None: unreadable), so a
        file written in chunks is applied whole, never its first part (`folder_quiet`)."""
        while True:
            wait = settle_wait_s(self._newest_mtime(), self._wall(), self._settle_s)
            if wait <= 0:
                return current
            await asyncio.sleep(wait)
            again = folder_fingerprint(self._directory)
            if again is None or again == current:
                return again
            current = again

    def _newest_mtime(self) -> float:
        """When the folder's newest file changed; now if a file vanished while looking (an
        editor's rename under way), so the folder is not quiet yet."""
        try:
            marker = self._directory / bundle_text.MARKER_NAME
            files = [*policy_files(self._directory), *([marker] if marker.is_file() else [])]
            return newest_mtime(files) or 0.0
        except OSError:
            return self._wall()


async def load_running_policy(service: PolicyService, directory: Path) -> PolicyStore:
    """The policy to enforce at start: the newest version, or the folder as version 1.

    Raises PolicyInvalid when the database is empty and the folder is invalid,
    or when this process cannot compile the newest version (a missing env var).
    """
    running = (await service.bootstrap(directory)).version
    policy = await service.compile(running)
    return PolicyStore(policy, running.version, int(running.created_at.timestamp()))


@asynccontextmanager
async def keep_policy_in_sync(
    service: PolicyService, store: PolicyStore, providers: ProviderPool, directory: Path
) -> AsyncIterator[PolicySync]:
    """Run the database poll and the folder watch for the lifetime of the block, and have
    `service` enforce each version it writes before returning."""
    sync = PolicySync(service, store, providers)
    watcher = FolderWatcher(service, directory, enforced=lambda: store.version)
    service.attach(enforce=sync.enforce_now, folder_status=watcher.status)
    tasks = [
        asyncio.create_task(sync.run(), name="policy-sync"),
        asyncio.create_task(watcher.run(), name="policy-folder-watch"),
    ]
    try:
        yield sync
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await sync.close()
